//! The dashboard's HTTP server (hyper, HTTP/1.1, one connection per request): the page at `/`
//! (`page.html`, self-contained: inline CSS and JS, nothing else fetched) and the run's state at
//! `/events` as server-sent events, one `state` event per change and a last `done` event, after
//! which the stream ends. What the state says is [`super::Watch`]'s business; this module only
//! carries the latest JSON text to every open page.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// The page, served as it is.
const PAGE: &str = include_str!("page.html");

/// What the page may load: nothing but its own inline script and style, and its events.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src data:; connect-src 'self'";

/// The latest state, as published.
#[derive(Clone, Debug, Default)]
struct Published {
    /// The state's JSON text (one line); empty before the first.
    json: Arc<str>,
    /// The last state of the run.
    done: bool,
}

/// A running dashboard server; cheap to clone. It serves until the last clone is dropped.
#[derive(Clone)]
pub struct Dashboard {
    shared: Arc<Shared>,
}

struct Shared {
    address: SocketAddr,
    state: watch::Sender<Published>,
    /// Connections open now (pages loading, event streams).
    connections: Arc<AtomicUsize>,
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Page,
    Events,
    NotFound,
    NotAllowed,
}

fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::GET, "/" | "/index.html") => Route::Page,
        (&Method::GET, "/events") => Route::Events,
        (&Method::GET, _) => Route::NotFound,
        _ => Route::NotAllowed,
    }
}

/// One server-sent event carrying `state` (a comment while there is none yet).
fn event(state: &Published) -> Bytes {
    if state.json.is_empty() {
        return Bytes::from_static(b": no state yet\n\n");
    }
    let name = if state.done { "done" } else { "state" };
    Bytes::from(format!("event: {name}\ndata: {}\n\n", state.json))
}

impl Dashboard {
    /// Binds `address` (port 0: any free port) and serves from a thread of its own.
    pub fn serve(address: SocketAddr) -> io::Result<Dashboard> {
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (state, updates) = watch::channel(Published::default());
        let connections = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let counted = connections.clone();
        std::thread::Builder::new()
            .name("live-dashboard".into())
            .spawn(move || runtime.block_on(accept(listener, updates, counted)))?;
        Ok(Dashboard {
            shared: Arc::new(Shared {
                address,
                state,
                connections,
            }),
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.shared.address)
    }

    /// Sends `json` to every open page (and to pages opened later); `done` for the last.
    pub(crate) fn publish(&self, json: String, done: bool) {
        self.shared.state.send_replace(Published {
            json: json.into(),
            done,
        });
    }

    /// Waits, at most `bound`, until no connection is open: after the last state, until every
    /// open page has been sent it.
    pub(crate) fn await_delivered(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while self.shared.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Counts a connection while it is open.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::SeqCst);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections until the dashboard is dropped.
async fn accept(
    listener: std::net::TcpListener,
    updates: watch::Receiver<Published>,
    connections: Arc<AtomicUsize>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let mut dropped = updates.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, say: try again in a moment.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let open = Open::new(&connections);
                let updates = updates.clone();
                tokio::spawn(async move {
                    let _open = open;
                    let service = hyper::service::service_fn(move |request| {
                        let updates = updates.clone();
                        async move { Ok::<_, Infallible>(respond(&request, updates)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            changed = dropped.changed() => if changed.is_err() { return },
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn respond(
    request: &Request<hyper::body::Incoming>,
    updates: watch::Receiver<Published>,
) -> Response<Body> {
    let response = Response::builder().header("cache-control", "no-store");
    let built = match route(request.method(), request.uri().path()) {
        Route::Page => response
            .header("content-type", "text/html; charset=utf-8")
            .header("content-security-policy", CONTENT_SECURITY_POLICY)
            .body(Full::new(Bytes::from_static(PAGE.as_bytes())).boxed()),
        Route::Events => response
            .header("content-type", "text/event-stream")
            .body(StreamBody::new(events(updates)).boxed()),
        Route::NotFound => response
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found\n")).boxed()),
        Route::NotAllowed => response
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header("allow", "GET")
            .body(Full::new(Bytes::new()).boxed()),
    };
    built.expect("a response from fixed parts")
}

/// Where a page's event stream is.
enum Step {
    /// Nothing sent yet.
    Opening,
    /// The state as it was when the page connected is next.
    Now,
    /// The next new state is next.
    Next,
    /// The last state has been sent.
    Ended,
}

/// The event stream of one page: the state now, then each new one, ending after the last.
fn events(
    updates: watch::Receiver<Published>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::unfold((updates, Step::Opening), |(mut updates, step)| async move {
        match step {
            // A page that lost its connection asks again after a second.
            Step::Opening => Some((
                Ok(Frame::data(Bytes::from_static(b"retry: 1000\n\n"))),
                (updates, Step::Now),
            )),
            Step::Ended => None,
            Step::Now | Step::Next => {
                if matches!(step, Step::Next) && updates.changed().await.is_err() {
                    return None;
                }
                let state = updates.borrow_and_update().clone();
                let next = if state.done { Step::Ended } else { Step::Next };
                Some((Ok(Frame::data(event(&state))), (updates, next)))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/"), Route::Page);
        assert_eq!(route(&Method::GET, "/index.html"), Route::Page);
        assert_eq!(route(&Method::GET, "/events"), Route::Events);
        assert_eq!(route(&Method::GET, "/favicon.ico"), Route::NotFound);
        assert_eq!(route(&Method::POST, "/events"), Route::NotAllowed);
    }

    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// Sends `request` and reads until `needle` has come (a hang guard of 10 s per read).
    fn ask(request: &str, dashboard: &Dashboard) -> TcpStream {
        let mut stream = TcpStream::connect(dashboard.address()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream
    }

    fn read_until(stream: &mut TcpStream, seen: &mut String, needle: &str) {
        let mut buffer = [0; 4096];
        while !seen.contains(needle) {
            let n = stream.read(&mut buffer).unwrap();
            assert!(n > 0, "closed before {needle:?}: {seen}");
            seen.push_str(std::str::from_utf8(&buffer[..n]).unwrap());
        }
    }

    #[test]
    fn the_page_is_self_contained_and_events_end_after_the_last_state() {
        let dashboard = Dashboard::serve("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(dashboard.url().starts_with("http://127.0.0.1:"));

        let mut page = ask("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &dashboard);
        let mut text = String::new();
        page.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!(
            "content-security-policy: {CONTENT_SECURITY_POLICY}\r\n"
        )));
        assert!(text.contains("new EventSource('events')"));
        for external in [
            "<script src",
            "<link rel=\"stylesheet",
            "@import",
            "url(",
            "@font-face",
        ] {
            assert!(
                !PAGE.contains(external),
                "the page loads something: {external}"
            );
        }

        dashboard.publish("{\"n\":1}".to_string(), false);
        let mut events = ask("GET /events HTTP/1.1\r\nHost: x\r\n\r\n", &dashboard);
        let mut seen = String::new();
        read_until(&mut events, &mut seen, "event: state\ndata: {\"n\":1}\n\n");
        assert!(
            seen.contains("content-type: text/event-stream\r\n"),
            "{seen}"
        );
        assert!(seen.contains("retry: 1000\n\n"));
        dashboard.publish("{\"n\":2}".to_string(), false);
        read_until(&mut events, &mut seen, "event: state\ndata: {\"n\":2}\n\n");
        dashboard.publish("{\"n\":3}".to_string(), true);
        read_until(&mut events, &mut seen, "event: done\ndata: {\"n\":3}\n\n");
        // The stream ends (the last chunk) and the connection closes.
        let mut rest = String::new();
        events.read_to_string(&mut rest).unwrap();
        assert!((seen + &rest).ends_with("0\r\n\r\n"));
        dashboard.await_delivered(Duration::from_secs(10));
        assert_eq!(dashboard.shared.connections.load(Ordering::SeqCst), 0);

        // A page opened after the end gets the last state and the end at once.
        let mut late = ask("GET /events HTTP/1.1\r\nHost: x\r\n\r\n", &dashboard);
        let mut text = String::new();
        late.read_to_string(&mut text).unwrap();
        assert!(text.contains("event: done\ndata: {\"n\":3}\n\n"), "{text}");

        let mut missing = ask("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", &dashboard);
        let mut text = String::new();
        missing.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 "), "{text}");
    }

    #[test]
    fn events_name_the_last_state_done() {
        let state = |json: &str, done| Published {
            json: json.into(),
            done,
        };
        assert_eq!(&event(&state("", false))[..], b": no state yet\n\n");
        assert_eq!(
            &event(&state("{\"a\":1}", false))[..],
            b"event: state\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(&event(&state("{}", true))[..], b"event: done\ndata: {}\n\n");
    }
}
