//! The page's server, on loopback: `GET /` answers the page ([`super::page`]),
//! `GET /socket.io.min.js` the Socket.IO client bundled into fleetbench
//! ([`super::page::SOCKET_IO_CLIENT`]), `GET /report` upgrades to the report WebSocket the page
//! talks back on, anything else is 404. The only
//! sockets of the browser role; what is said on the report socket is [`super::session`]'s.
//!
//! The page is served cross-origin isolated (`Cross-Origin-Opener-Policy: same-origin`,
//! `Cross-Origin-Embedder-Policy: require-corp`), which lets Chromium give it a 5 µs
//! `performance.now()` instead of 100 µs. Neither header stands in a subscription's way: an
//! EventSource is a CORS request (the device's `Access-Control-Allow-Origin: *` lets it read the
//! stream) and a WebSocket is not subject to either.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use transports::served::http::{parse_request, Request};

use super::page::{SOCKET_IO_CLIENT, SOCKET_IO_CLIENT_PATH};

/// How long a connection may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The path the page's report WebSocket upgrades on.
pub const REPORT_PATH: &str = "/report";

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// The page.
    Page,
    /// The Socket.IO client the page loads.
    SocketIoClient,
    /// The report WebSocket, with the client's `Sec-WebSocket-Key`.
    Report(String),
    /// Anything else.
    NotFound,
}

/// Where `request` goes.
pub fn route(request: &Request) -> Route {
    let upgrade = request
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    match (request.method.as_str(), request.path()) {
        ("GET", "/") => Route::Page,
        ("GET", SOCKET_IO_CLIENT_PATH) => Route::SocketIoClient,
        ("GET", REPORT_PATH) if upgrade => match request.header("sec-websocket-key") {
            Some(key) => Route::Report(key.trim().to_string()),
            None => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// The page's response: the HTML, never cached, cross-origin isolated, and the connection
/// closed after it.
pub fn page_response(html: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nCross-Origin-Opener-Policy: same-origin\r\n\
         Cross-Origin-Embedder-Policy: require-corp\r\nConnection: close\r\n\r\n",
        html.len()
    )
    .into_bytes();
    out.extend_from_slice(html.as_bytes());
    out
}

/// The Socket.IO client's response: the script as released, cached by the browser for the
/// page's life (it never changes within a build), and the connection closed after it. Same
/// origin as the page, so the page's cross-origin isolation lets it load.
pub fn script_response(script: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/javascript; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: max-age=3600\r\nConnection: close\r\n\r\n",
        script.len()
    )
    .into_bytes();
    out.extend_from_slice(script.as_bytes());
    out
}

/// The answer to the report socket's upgrade (RFC 6455 §4.2.2).
pub fn upgrade_response(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes()
}

/// 404, closing the connection.
const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// The page's server, listening.
pub struct PageServer {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    reports: mpsc::Receiver<WebSocketStream<TcpStream>>,
}

impl PageServer {
    /// Listens on a free loopback port and serves `html` until `shutdown`.
    pub async fn start(html: String, shutdown: CancellationToken) -> std::io::Result<PageServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (sender, reports) = mpsc::channel(4);
        tokio::spawn(serve(listener, Arc::from(html), sender, shutdown));
        Ok(PageServer { addr, reports })
    }

    /// The page's URL.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The next report socket a page opened, once upgraded; `None` once the server stopped.
    pub async fn next_report(&mut self) -> Option<WebSocketStream<TcpStream>> {
        self.reports.recv().await
    }
}

async fn serve(
    listener: TcpListener,
    html: Arc<str>,
    reports: mpsc::Sender<WebSocketStream<TcpStream>>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("the page's server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (html, reports) = (html.clone(), reports.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &html, &reports).await {
                tracing::debug!("the page's server: {e}");
            }
        });
    }
}

/// Reads one request (bounded by [`REQUEST_TIMEOUT`]; Chromium also opens connections it never
/// uses) and answers it.
async fn handle(
    mut stream: TcpStream,
    html: &str,
    reports: &mpsc::Sender<WebSocketStream<TcpStream>>,
) -> std::io::Result<()> {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::other("no request within the timeout"))??;
    match route(&request) {
        Route::Page => stream.write_all(&page_response(html)).await?,
        Route::SocketIoClient => stream.write_all(&script_response(SOCKET_IO_CLIENT)).await?,
        Route::NotFound => stream.write_all(NOT_FOUND).await?,
        Route::Report(key) => {
            stream.write_all(&upgrade_response(&key)).await?;
            let ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
            let _ = reports.send(ws).await;
            return Ok(());
        }
    }
    stream.shutdown().await
}

/// Reads a request head; nothing follows it (a GET has no body, and a WebSocket client sends
/// no frame before the upgrade is answered).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Request> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before a whole request"));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_request(&buf) {
            Ok(Some((request, _))) => return Ok(request),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Request {
        parse_request(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn requests_route_to_the_page_the_report_socket_or_nowhere() {
        assert_eq!(
            route(&request("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
            Route::Page
        );
        assert_eq!(
            route(&request(
                "GET /report HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )),
            Route::Report("dGhlIHNhbXBsZSBub25jZQ==".into())
        );
        assert_eq!(
            route(&request(
                "GET /socket.io.min.js HTTP/1.1\r\nHost: x\r\n\r\n"
            )),
            Route::SocketIoClient
        );
        assert_eq!(
            route(&request("GET /report HTTP/1.1\r\n\r\n")),
            Route::NotFound
        );
        assert_eq!(
            route(&request("GET /favicon.ico HTTP/1.1\r\n\r\n")),
            Route::NotFound
        );
    }

    #[test]
    fn the_upgrade_answers_with_rfc_6455s_accept_key() {
        // The example of RFC 6455 §1.3.
        let response = String::from_utf8(upgrade_response("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    }

    #[test]
    fn the_socket_io_client_is_served_whole_as_javascript() {
        let response = script_response(SOCKET_IO_CLIENT);
        let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = std::str::from_utf8(&response[..head_end]).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/javascript"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", SOCKET_IO_CLIENT.len())));
        assert_eq!(&response[head_end..], SOCKET_IO_CLIENT.as_bytes());
    }

    #[test]
    fn the_page_is_served_cross_origin_isolated() {
        let response = String::from_utf8(page_response("<p>x</p>")).unwrap();
        assert!(response.contains("Cross-Origin-Opener-Policy: same-origin\r\n"));
        assert!(response.contains("Cross-Origin-Embedder-Policy: require-corp\r\n"));
        assert!(response.ends_with(
            "Content-Length: 8\r\nCache-Control: no-store\r\n\
Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n\
Connection: close\r\n\r\n<p>x</p>"
        ));
    }
}
