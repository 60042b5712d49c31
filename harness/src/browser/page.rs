//! The page the browser opens: a dashboard of the fleet in one HTML file with its script inline,
//! fetching nothing from anywhere but its own server (its icon is a `data:` URL; the Socket.IO
//! client, [`SOCKET_IO_CLIENT`], is bundled into fleetbench and served beside the page at
//! [`SOCKET_IO_CLIENT_PATH`]). Pure: the text only; [`super::server`] serves it.
//!
//! The script opens the report WebSocket back to the server that served it, and when told
//! which subscriptions to open (see [`super::protocol`]) opens each with the browser's own API:
//! `new EventSource(url)` (one per device, as a dashboard of the fleet does; the browser
//! reconnects it by itself, with `Last-Event-ID`), `new WebSocket(url)` (opened again a second
//! after it closes, as a dashboard's script does) or the Socket.IO client's
//! `io(url, {transports: ["websocket"]})` (a WebSocket from the start, never HTTP long-polling;
//! the client reconnects by itself, with its own backoff), a `reading` event's object turned
//! back into JSON text with `JSON.stringify`. Every callback reads the clock first
//! (`performance.timeOrigin + performance.now()`), then keeps the arrival for the next batch;
//! batches go back every [`BATCH`]. A probe is answered at once with the clock.

use std::time::Duration;

/// How often the page sends what arrived since its last batch.
pub const BATCH: Duration = Duration::from_millis(100);

/// The Socket.IO JavaScript client, socket.io-client 4.8.1's `dist/socket.io.min.js` as
/// released (MIT; see `vendor/README.md` for where it came from and its sha256).
pub const SOCKET_IO_CLIENT: &str = include_str!("vendor/socket.io.min.js");

/// Where the page's server serves [`SOCKET_IO_CLIENT`], and the page loads it from.
pub const SOCKET_IO_CLIENT_PATH: &str = "/socket.io.min.js";

/// The page's script. `BATCH_MS` is replaced by [`BATCH`] in ms.
const SCRIPT: &str = r#""use strict";
const now = () => performance.timeOrigin + performance.now();
const report = new WebSocket("ws://" + location.host + "/report");
const shown = document.getElementById("received");
let batch = [];
let received = 0;
function send(message) {
  if (report.readyState === WebSocket.OPEN) report.send(JSON.stringify(message));
}
function flush() {
  if (batch.length === 0) return;
  send({arrivals: batch});
  batch = [];
  shown.textContent = String(received);
}
setInterval(flush, BATCH_MS);
function eventSource(i, url) {
  const source = new EventSource(url);
  source.onopen = () => send({open: {i, t: now()}});
  source.onerror = () => send({closed: {i, t: now()}});
  source.onmessage = (e) => {
    const t = now();
    batch.push([i, t, e.data]);
    received += 1;
  };
}
function webSocket(i, url) {
  const socket = new WebSocket(url);
  socket.onopen = () => send({open: {i, t: now()}});
  socket.onmessage = (e) => {
    const t = now();
    batch.push([i, t, e.data]);
    received += 1;
  };
  socket.onclose = () => {
    send({closed: {i, t: now()}});
    setTimeout(() => webSocket(i, url), 1000);
  };
}
function socketIo(i, url) {
  const socket = io(url, {transports: ["websocket"]});
  socket.on("connect", () => send({open: {i, t: now()}}));
  socket.on("reading", (e) => {
    const t = now();
    batch.push([i, t, JSON.stringify(e)]);
    received += 1;
  });
  socket.on("disconnect", () => send({closed: {i, t: now()}}));
  socket.on("connect_error", () => send({closed: {i, t: now()}}));
}
const subscribe = {EventSource: eventSource, WebSocket: webSocket, SocketIo: socketIo};
report.onopen = () => send({hello: {isolated: self.crossOriginIsolated === true, agent: navigator.userAgent}});
report.onmessage = (e) => {
  const t = now();
  const m = JSON.parse(e.data);
  if (m.probe !== undefined) {
    send({probe: {k: m.probe, t}});
    return;
  }
  if (m.subscribe) m.subscribe.urls.forEach((url, i) => subscribe[m.subscribe.with](i, url));
  if (m.flush) {
    flush();
    send({flushed: true});
  }
};
"#;

/// The page's HTML, its own script inline after the Socket.IO client's, loaded from the page's
/// own server.
pub fn html() -> String {
    let script = SCRIPT.replace("BATCH_MS", &BATCH.as_millis().to_string());
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>fleetbench dashboard</title><link rel=\"icon\" href=\"data:,\"></head>\n\
         <body><h1>fleetbench dashboard</h1><p>readings received: <span id=\"received\">0</span></p>\n\
         <script src=\"{SOCKET_IO_CLIENT_PATH}\"></script>\n\
         <script>\n{script}</script></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_fetches_nothing_and_batches_every_100_ms() {
        let page = html();
        assert!(page.contains("setInterval(flush, 100);"));
        assert!(!page.contains("BATCH_MS"));
        // Nothing but the report socket, the subscriptions it is told and the Socket.IO client
        // from its own origin: one src, a path; no href but the data: icon.
        assert_eq!(page.matches("src=").count(), 1);
        assert!(page.contains("<script src=\"/socket.io.min.js\"></script>"));
        assert_eq!(page.matches("href=").count(), 1);
        assert!(page.contains("href=\"data:,\""));
        // Each callback reads the clock before anything else.
        assert_eq!(page.matches("(e) => {\n    const t = now();").count(), 3);
        // Socket.IO over a WebSocket only, never long-polling.
        assert!(page.contains("io(url, {transports: [\"websocket\"]})"));
    }

    #[test]
    fn the_socket_io_client_is_the_released_4_8_1_file() {
        assert!(SOCKET_IO_CLIENT.starts_with("/*!\n * Socket.IO v4.8.1\n"));
        // Its length as released (vendor/README.md has its sha256): nothing edited it.
        assert_eq!(SOCKET_IO_CLIENT.len(), 46_831);
        assert!(SOCKET_IO_CLIENT.ends_with("//# sourceMappingURL=socket.io.min.js.map\n"));
    }
}
