// k6 as a fleet of WebSocket devices, the yardstick fleetbench's `ws` devices are measured
// against (`just bench-peers`): VUS virtual users, each one socket to URL, sending a JSON reading
// the size of a fleetbench device's every INTERVAL_MS for SECONDS, their phases spread over the
// interval.
import ws from 'k6/ws';
import { sleep } from 'k6';

const vus = parseInt(__ENV.VUS || '500');
const intervalMs = parseInt(__ENV.INTERVAL_MS || '100');
const seconds = parseInt(__ENV.SECONDS || '30');

export const options = {
  scenarios: {
    fleet: { executor: 'per-vu-iterations', vus: vus, iterations: 1, maxDuration: `${seconds + 60}s` },
  },
};

export default function () {
  const id = __VU;
  // Connects spread over 2 s, sends spread over the interval.
  sleep((2 * id) / vus);
  ws.connect(__ENV.URL, {}, function (socket) {
    let seq = 0;
    socket.on('open', function () {
      socket.setTimeout(function () {
        socket.setInterval(function () {
          const t = Date.now() * 1000;
          socket.send(`{"id":${id},"seq":${seq},"t":${t},"temp":22.5,"humidity":45,"pressure":101325,"ppm":412.5}`);
          seq += 1;
        }, intervalMs);
      }, (intervalMs * id) / vus);
      socket.setTimeout(function () { socket.close(); }, seconds * 1000);
    });
  });
}
