//! Headless Chromium for tests that watch a page over time: started on a URL with its remote
//! debugging port on loopback, driven over the DevTools protocol (a WebSocket, one call at a
//! time): evaluate an expression in the page, take a screenshot. DNS is cut off, so the page
//! can reach nothing but the loopback addresses it names. The browser is closed when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Debian's chromium, or a failure naming the install command: a missing tool is never a pass.
/// A test that calls it has `chromium` in its name, so the `without-tools` nextest profile
/// (.config/nextest.toml) can skip it.
pub fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed (looked for /usr/bin/chromium and \
                 /usr/bin/chromium-browser). This test needs it; install the test prerequisites \
                 with `apt-get install -y mosquitto chromium g++`, or skip the tests that need \
                 them: `NEXTEST_PROFILE=without-tools cargo nextest run --workspace` (README, \
                 Quick start)"
            )
        })
}

/// A headless Chromium showing one page.
pub struct Browser {
    process: Child,
    devtools: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Chromium's log (console messages, failed loads).
    pub log: PathBuf,
}

/// How long one DevTools call may take before the test fails (a hang guard).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Browser {
    /// Opens `url` in a new headless Chromium whose profile and log go in `dir`.
    pub fn open(url: &str, dir: &Path) -> Browser {
        let profile = dir.join("chromium-profile");
        let log = dir.join("chromium.log");
        let process = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1280,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut browser = Browser {
            process,
            devtools: connect_to_page(&profile, url),
            next_id: 0,
            log,
        };
        // Once the page has loaded.
        let deadline = Instant::now() + Duration::from_secs(60);
        let loaded = format!(
            "document.readyState === 'complete' && location.href.startsWith({})",
            json!(url)
        );
        while browser.evaluate(&loaded) != true {
            assert!(
                Instant::now() < deadline,
                "{url} did not load within a minute"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        browser
    }

    /// Calls `method` and returns its result, skipping the events that come in between.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params });
        self.devtools
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let text = match self.devtools.read().expect("DevTools answers") {
                tungstenite::Message::Text(t) => t,
                _ => continue,
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression evaluated in the page (returned by value).
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// A PNG of the page as it is shown now.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let result = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().expect("screenshot data"))
            .unwrap()
    }

    /// Lines of Chromium's log that say the page went wrong: console errors, uncaught
    /// exceptions, loads that failed or that the page's content security policy refused.
    pub fn page_errors(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                (l.contains("CONSOLE") && (l.contains("rror") || l.contains("Uncaught")))
                    || l.contains("Failed to load resource")
                    || l.contains("net::ERR_")
                    || l.contains("Refused to")
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Waits (a minute at most) for the browser's DevTools port, finds the page showing `url`, and
/// connects to it.
fn connect_to_page(
    profile: &Path,
    url: &str,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let port_file = profile.join("DevToolsActivePort");
    let page = loop {
        assert!(
            Instant::now() < deadline,
            "Chromium did not open {url} with DevTools within a minute"
        );
        let port = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u16>().ok()));
        if let Some(port) = port {
            if let Some(pages) = get_json(port, "/json/list") {
                let found = pages.as_array().into_iter().flatten().find(|p| {
                    p["type"] == "page" && p["url"].as_str().is_some_and(|u| u.starts_with(url))
                });
                if let Some(p) = found {
                    break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (socket, _) = tungstenite::connect(page.as_str()).expect("DevTools WebSocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    }
    socket
}

/// GET `path` from the DevTools HTTP server on `port` as JSON; none if it does not answer yet.
/// (It answers HTTP/1.1 only, and keeps the connection open: the body is Content-Length long.)
fn get_json(port: u16, path: &str) -> Option<Value> {
    use std::io::BufRead;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut reader = std::io::BufReader::new(stream);
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}
