//! The HTTP a device server speaks, as bytes: request heads parsed with httparse, and the exact
//! response heads, SSE events, chunks and command answers the ESP8266 libraries write. Pure; no
//! I/O.
//!
//! Checked against:
//! - ESP8266WebServer (Arduino core 3.1.2, `ESP8266WebServer-impl.h`): `_prepareHeader` writes
//!   the status line, `Content-Type`, then `Content-Length` or (for `CONTENT_LENGTH_UNKNOWN`)
//!   `Accept-Ranges: none` and `Transfer-Encoding: chunked`, then `Connection` and, when kept
//!   alive, `Keep-Alive: timeout=2000` (`HTTP_MAX_CLOSE_WAIT`). `send` writes the head and the
//!   body in two writes; `sendContent` writes a chunk in three (`%zx\r\n`, the data, `\r\n`).
//! - AsyncEventSource (ESP32Async/ESPAsyncWebServer 3.x, `AsyncEventSource.cpp`
//!   `generateEventMessage`, `WebResponses.cpp` `_assembleHead`), and `AsyncBasicResponse`
//!   (`request->send(code, type, content)`) for commands: head and body in one write, the
//!   header names as 3.8 and later spell them (3.7 wrote them in lower case, the same length).
//! - A command's request as a backend's HTTP client sends it ([`command_request`]) and the
//!   response head it reads back ([`parse_response`]).

use std::io::Write;

/// Largest request head a device accepts (ESP8266WebServer keeps far less).
pub const MAX_HEAD: usize = 2048;

/// Largest request body a device takes (a command's JSON; ESP8266WebServer reads a POST's
/// body whole into RAM, so a real device's bound is its free heap).
pub const MAX_BODY: usize = 16 * 1024;

/// The path a device takes commands on (`server.on("/cmd", HTTP_POST, …)`).
pub const COMMAND_PATH: &str = "/cmd";

/// A parsed request head. Only a `Content-Length` body is taken (a command's); it follows the
/// head and is not part of this value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, …
    pub method: String,
    /// The target, query included: `/readings?after=41`.
    pub target: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The head's length, bytes (request line, headers, blank line).
    pub head_len: usize,
    /// The body's length, bytes (`Content-Length`; 0 without one).
    pub body_len: usize,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter's value.
    pub fn query(&self, key: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Whether ESP8266WebServer keeps the connection after answering (`_parseRequest`): by
    /// default for HTTP/1.1 and later; a `Connection` header decides when present (only
    /// `keep-alive` keeps it).
    pub fn keeps_alive(&self) -> bool {
        match self.header("connection") {
            Some(value) => value.trim().eq_ignore_ascii_case("keep-alive"),
            None => self.version > 0,
        }
    }

    /// A header's value (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The head is larger than [`MAX_HEAD`].
    #[error("request head over {MAX_HEAD} bytes")]
    TooLarge,
    /// The body announced is larger than [`MAX_BODY`].
    #[error("request body over {MAX_BODY} bytes")]
    BodyTooLarge,
    /// Not HTTP/1.x, or a `Content-Length` that is not a number.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A chunked body (`Transfer-Encoding`): device servers read bodies by `Content-Length` only.
    #[error("request with a chunked body")]
    HasBody,
}

impl RequestError {
    /// The status a device answers it with: 413 for what is too large, else 400.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::TooLarge | RequestError::BodyTooLarge => 413,
            RequestError::Malformed(_) | RequestError::HasBody => 400,
        }
    }
}

/// Parses a request head at the start of `buf`: `Ok(None)` until it is whole; then the request
/// and the bytes it took (its `head_len`).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; 24];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(RequestError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD {
                return Err(RequestError::TooLarge);
            }
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let mut request = Request {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                headers,
                version: req.version.unwrap_or(1),
                head_len: len,
                body_len: 0,
            };
            if request.header("transfer-encoding").is_some() {
                return Err(RequestError::HasBody);
            }
            if let Some(length) = request.header("content-length") {
                request.body_len = length
                    .trim()
                    .parse()
                    .map_err(|_| RequestError::Malformed(format!("Content-Length {length:?}")))?;
            }
            if request.body_len > MAX_BODY {
                return Err(RequestError::BodyTooLarge);
            }
            Ok(Some((request, len)))
        }
        Err(e) => Err(RequestError::Malformed(e.to_string())),
    }
}

/// An error response that closes the connection: `HTTP/1.1 <status> <reason>`, no body.
pub fn error_response(status: u16) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Error",
    };
    format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// The header the SSE sketch adds to every response of its server, so that a dashboard page
/// served from another origin may read the event stream (`DefaultHeaders::Instance().addHeader(
/// "Access-Control-Allow-Origin", "*")` in `setup()`; without it a browser refuses an
/// EventSource's stream from another origin). `AsyncWebServerResponse`'s constructor copies the
/// default headers before a response adds its own, so it comes right after the status line.
pub const CORS_HEADER: &str = "Access-Control-Allow-Origin: *\r\n";

/// AsyncEventSource's response head, with the sketch's [`CORS_HEADER`] first (the default
/// headers, copied by `AsyncWebServerResponse`'s constructor): `AsyncEventSourceResponse` adds
/// `Cache-Control` and `Connection`, then `_assembleHead` adds `Accept-Ranges: none` (any
/// HTTP/1.1 response) and the content type, in that order. (ESP32Async 3.x spells the names so;
/// me-no-dev's 3.6.0 wrote them in lower case, the same length.)
pub const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\n\
Cache-Control: no-cache\r\nConnection: keep-alive\r\n\
Accept-Ranges: none\r\nContent-Type: text/event-stream\r\n\r\n";

/// One SSE event as `generateEventMessage` writes it for `send(payload, NULL, seq)`: `id: <seq>\n`
/// (left out when the id is 0: the library writes the line only for a non-zero id), then
/// `data: <payload>\n\n` (the payload must be one line).
pub fn sse_event(seq: u32, payload: &[u8], out: &mut Vec<u8>) {
    if seq != 0 {
        let _ = writeln!(out, "id: {seq}");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

/// Framing bytes of an SSE event for `seq`: the `id:` line (none for 0), `data: ` and the two
/// newlines.
pub fn sse_framing(seq: u32) -> usize {
    let id = if seq == 0 {
        0
    } else {
        "id: ".len() + seq.to_string().len() + 1
    };
    id + "data: ".len() + 2
}

/// ESP8266WebServer's `HTTP_MAX_CLOSE_WAIT` in ms: how long it waits for a client to close
/// after a response, advertised as `Keep-Alive: timeout=`.
pub const WEB_SERVER_CLOSE_WAIT_MS: u32 = 2000;

/// How ESP8266WebServer's response announces its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// `Content-Length: <n>` (`send` with a body of `n` bytes, 0 for none).
    Known(usize),
    /// `setContentLength(CONTENT_LENGTH_UNKNOWN)` to an HTTP/1.1 client: chunked.
    Chunked,
}

/// The reason phrase ESP8266WebServer's `responseCodeToString` gives `status`.
fn web_server_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        _ => "",
    }
}

/// The head ESP8266WebServer's `_prepareHeader` writes for an HTTP/1.1 client: status line,
/// `Content-Type` (empty for `send(code)`, whose null type becomes an empty `String`), the length
/// (`Content-Length`, or `Accept-Ranges: none` and `Transfer-Encoding: chunked`), `Connection`,
/// and `Keep-Alive: timeout=2000` when `keep_alive`.
pub fn web_server_head(
    status: u16,
    content_type: &str,
    body: BodyLength,
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n",
        web_server_reason(status)
    );
    match body {
        BodyLength::Known(len) => {
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
        BodyLength::Chunked => {
            head.push_str("Accept-Ranges: none\r\nTransfer-Encoding: chunked\r\n");
        }
    }
    if keep_alive {
        head.push_str(&format!(
            "Connection: keep-alive\r\nKeep-Alive: timeout={WEB_SERVER_CLOSE_WAIT_MS}\r\n\r\n"
        ));
    } else {
        head.push_str("Connection: close\r\n\r\n");
    }
    head.into_bytes()
}

/// The head of an http-stream response (`setContentLength(CONTENT_LENGTH_UNKNOWN)` then
/// `send(200, type, "")`: the empty body writes no chunk).
pub fn stream_head(content_type: &str, keep_alive: bool) -> Vec<u8> {
    web_server_head(200, content_type, BodyLength::Chunked, keep_alive)
}

/// The first write of `sendContent` on a chunked response: the data's length in lower-case hex
/// and CRLF. The data follows in a second write and `\r\n` in a third.
pub fn chunk_size_line(len: usize) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

/// What ends a chunk (the third write of `sendContent`).
pub const CHUNK_END: &[u8] = b"\r\n";

/// The writes of one `sendContent(data)` on a chunked response, in order.
pub fn chunk_writes(data: &[u8]) -> [Vec<u8>; 3] {
    [
        chunk_size_line(data.len()),
        data.to_vec(),
        CHUNK_END.to_vec(),
    ]
}

/// One chunk's bytes: `<hex length>\r\n<data>\r\n` (the three writes of `sendContent`
/// together).
pub fn chunk(data: &[u8], out: &mut Vec<u8>) {
    for part in chunk_writes(data) {
        out.extend_from_slice(&part);
    }
}

/// Framing bytes of a chunk of `len` bytes.
pub fn chunk_framing(len: usize) -> usize {
    chunk_size_line(len).len() + CHUNK_END.len()
}

/// The last chunk as ESP8266WebServer ends a chunked response (`sendContent("")`, from
/// `_finalizeResponse` or `chunkedResponseFinalize`): `0\r\n` and `\r\n`, two writes (the empty
/// data writes nothing).
pub const LAST_CHUNK_WRITES: [&[u8]; 2] = [b"0\r\n", b"\r\n"];

/// The head of a long-poll answer with a body of `len` bytes (`send(200, type, body)`; the body
/// follows in a second write).
pub fn ok_head(content_type: &str, len: usize, keep_alive: bool) -> Vec<u8> {
    web_server_head(200, content_type, BodyLength::Known(len), keep_alive)
}

/// A long-poll answer with nothing newer, kept alive: `send(204)`, whose missing content type
/// is written as an empty `Content-Type`.
pub const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Type: \r\nContent-Length: 0\r\n\
Connection: keep-alive\r\nKeep-Alive: timeout=2000\r\n\r\n";

/// A long-poll answer with nothing newer: [`NO_CONTENT`], or with `Connection: close` when the
/// collector asked to close.
pub fn no_content(keep_alive: bool) -> Vec<u8> {
    web_server_head(204, "", BodyLength::Known(0), keep_alive)
}

/// The writes of ESP8266WebServer's `send(status, content_type, body)`: the head
/// ([`web_server_head`] with `Content-Length`), then the body in a second write when there is
/// one (`send` hands the body to `sendContent` only when its length is not 0).
pub fn web_server_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> Vec<Vec<u8>> {
    let mut writes = vec![web_server_head(
        status,
        content_type,
        BodyLength::Known(body.len()),
        keep_alive,
    )];
    if !body.is_empty() {
        writes.push(body.to_vec());
    }
    writes
}

/// The reason phrase ESPAsyncWebServer's `responseCodeToString` gives `status`.
fn async_web_server_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        _ => "",
    }
}

/// ESPAsyncWebServer's answer to `request->send(status, content_type, body)` (ESP32Async 3.x,
/// `AsyncBasicResponse`, one write): the status line, then the headers in the order they are
/// added, `Connection: close` (the constructor), `Accept-Ranges: none` (an HTTP/1.1 request),
/// `Content-Length` (always) and `Content-Type` (when there is one: a body without a type is
/// `text/plain`). The server closes the connection once the response is acknowledged.
pub fn async_web_server_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    version: u8,
) -> Vec<u8> {
    async_web_server_response_with_defaults("", status, content_type, body, version)
}

/// [`async_web_server_response`] from a server whose sketch added default headers
/// (`DefaultHeaders`), given as whole lines (`Name: value\r\n`, e.g. [`CORS_HEADER`]): the
/// response's constructor copies them first, so they follow the status line, before
/// `Connection: close`.
pub fn async_web_server_response_with_defaults(
    default_headers: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
    version: u8,
) -> Vec<u8> {
    let content_type = match content_type {
        "" if !body.is_empty() => "text/plain",
        other => other,
    };
    let mut out = format!(
        "HTTP/1.{version} {status} {}\r\n{default_headers}Connection: close\r\n",
        async_web_server_reason(status)
    );
    if version > 0 {
        out.push_str("Accept-Ranges: none\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The request a backend's HTTP client sends a command with, one connection per command and
/// no keep-alive: `POST /cmd`, `Host`, `Content-Type: application/json`, `Content-Length`,
/// `Connection: close`, then the command's JSON.
pub fn command_request(host: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {COMMAND_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A response head as the backend reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The head's length, bytes.
    pub head_len: usize,
    /// The body's length, bytes (`Content-Length`).
    pub body_len: usize,
}

/// Why bytes are not the response a device answers a command with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not an HTTP/1.x response head, or one over [`MAX_HEAD`] bytes.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// No `Content-Length`, or one over [`MAX_BODY`] (device servers always send one).
    #[error("response without a usable Content-Length")]
    NoLength,
}

/// Parses a response head at the start of `buf`: `Ok(None)` until it is whole.
pub fn parse_response(buf: &[u8]) -> Result<Option<ResponseHead>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; 24];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(ResponseError::Malformed(
            format!("head over {MAX_HEAD} bytes"),
        )),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(head_len)) => {
            let body_len = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .filter(|len| *len <= MAX_BODY)
                .ok_or(ResponseError::NoLength)?;
            Ok(Some(ResponseHead {
                status: response.code.unwrap_or_default(),
                head_len,
                body_len,
            }))
        }
        Err(e) => Err(ResponseError::Malformed(e.to_string())),
    }
}

/// The content type of a payload encoding.
pub fn content_type(encoding: crate::Encoding) -> &'static str {
    match encoding {
        crate::Encoding::Json => "application/json",
        crate::Encoding::Binary => "application/octet-stream",
    }
}

/// The length of the binary records a device sends in `bytes`, the start of one stream or one
/// whole answer (`complete`): every record of a boot has one length, 26 bytes in the device's
/// first boot and 30 after a reboot (the boot appended), and a device's stream or answer never
/// spans a reboot.
///
/// - A whole answer: the length that divides it and at whose every record the first record's
///   device id is found (26 when both would do, or neither: the caller then finds a torn record).
/// - A stream of chunks, one record each, whose data hyper never hands over across two chunks:
///   `None` until 26 bytes are in; then 30 if 30 are, else 26. Only a first record split by
///   TCP exactly after its 26th byte is misread; the device id of the next record tells (see
///   the HTTP streaming collector).
pub fn binary_record_len(bytes: &[u8], complete: bool) -> Option<usize> {
    use crate::encoding::binary::{BOOT_RECORD_LEN, RECORD_LEN};
    if complete {
        let fits = |len: usize| {
            bytes.len().is_multiple_of(len) && bytes.chunks_exact(len).all(|r| r[..4] == bytes[..4])
        };
        return Some(if !fits(RECORD_LEN) && fits(BOOT_RECORD_LEN) {
            BOOT_RECORD_LEN
        } else {
            RECORD_LEN
        });
    }
    match bytes.len() {
        n if n >= BOOT_RECORD_LEN => Some(BOOT_RECORD_LEN),
        n if n >= RECORD_LEN => Some(RECORD_LEN),
        _ => None,
    }
}

/// Splits whole readings off the front of `buf`: a JSON reading is a flat object (it ends at
/// the first `}`), a binary one a record of `record_len` bytes (see [`binary_record_len`]).
/// Returns the payloads.
pub fn split_readings(
    buf: &mut Vec<u8>,
    encoding: crate::Encoding,
    record_len: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = match encoding {
            crate::Encoding::Json => {
                let start = buf.iter().position(|b| {
                    !b.is_ascii_whitespace() && *b != b',' && *b != b'[' && *b != b']'
                });
                match start {
                    Some(s) if s > 0 => {
                        buf.drain(..s);
                        continue;
                    }
                    Some(_) => buf.iter().position(|b| *b == b'}').map(|i| i + 1),
                    None => {
                        buf.clear();
                        None
                    }
                }
            }
            crate::Encoding::Binary => (buf.len() >= record_len.max(1)).then_some(record_len),
        };
        match end {
            Some(end) => out.push(buf.drain(..end).collect()),
            None => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_whole_partial_and_bad() {
        let raw = b"GET /readings?after=41 HTTP/1.1\r\nHost: 127.1.0.3:8080\r\n\r\n";
        let (req, len) = parse_request(raw).unwrap().unwrap();
        assert_eq!(len, raw.len());
        assert_eq!(req.path(), "/readings");
        assert_eq!(req.query("after"), Some("41"));
        assert_eq!(req.header("host"), Some("127.1.0.3:8080"));
        assert_eq!(parse_request(&raw[..20]).unwrap(), None);
        assert!(matches!(
            parse_request(b"\x00\x01 nonsense\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        assert_eq!(req.head_len, raw.len());
        assert_eq!(req.body_len, 0);
        let post = b"POST /cmd HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let (req, len) = parse_request(post).unwrap().unwrap();
        assert_eq!((len, req.head_len, req.body_len), (41, 41, 5));
        assert_eq!(&post[len..], b"hello", "the body is not part of the head");
        assert_eq!(
            parse_request(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(RequestError::HasBody)
        );
        assert!(matches!(
            parse_request(b"POST /x HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        let huge_body = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            parse_request(huge_body.as_bytes()),
            Err(RequestError::BodyTooLarge)
        );
        assert_eq!(RequestError::BodyTooLarge.status(), 413);
        let huge = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse_request(huge.as_bytes()), Err(RequestError::TooLarge));
    }

    #[test]
    fn sse_events_are_async_event_source_ones() {
        let mut out = Vec::new();
        sse_event(42, b"{\"a\":1}", &mut out);
        assert_eq!(out, b"id: 42\ndata: {\"a\":1}\n\n");
        assert_eq!(out.len() - 7, sse_framing(42));
        assert_eq!(sse_framing(7), 14);
        // generateEventMessage writes no id line for id 0.
        out.clear();
        sse_event(0, b"{\"a\":1}", &mut out);
        assert_eq!(out, b"data: {\"a\":1}\n\n");
        assert_eq!(
            sse_framing(0),
            8,
            "wire-formats.md: data: and the blank line"
        );
        assert_eq!(
            SSE_HEAD,
            b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\n\
Cache-Control: no-cache\r\nConnection: keep-alive\r\n\
Accept-Ranges: none\r\nContent-Type: text/event-stream\r\n\r\n"
        );
        assert_eq!(
            SSE_HEAD.len(),
            122 + 32,
            "AsyncEventSource's 122 B and the sketch's CORS header"
        );
    }

    #[test]
    fn chunks_are_send_content_writes() {
        let mut out = Vec::new();
        chunk(&[b'x'; 60], &mut out);
        assert_eq!(&out[..4], b"3c\r\n");
        assert_eq!(out.len() - 60, 6, "wire-formats.md: 6 B for a 60 B chunk");
        assert_eq!(chunk_framing(60), 6);
        assert_eq!(chunk_framing(300), 7);
        let [size, data, end] = chunk_writes(b"{\"a\":1}");
        assert_eq!(size, b"7\r\n");
        assert_eq!(data, b"{\"a\":1}");
        assert_eq!(end, b"\r\n");
        assert_eq!(
            LAST_CHUNK_WRITES.concat(),
            b"0\r\n\r\n",
            "wire-formats.md: 5 B"
        );
    }

    #[test]
    fn web_server_heads_are_prepare_header_ones() {
        assert_eq!(
            String::from_utf8(stream_head("application/json", true)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nAccept-Ranges: none\r\n\
             Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=2000\r\n\r\n"
        );
        assert_eq!(
            String::from_utf8(ok_head("application/json", 923, true)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 923\r\n\
             Connection: keep-alive\r\nKeep-Alive: timeout=2000\r\n\r\n"
        );
        assert_eq!(
            String::from_utf8(ok_head("application/octet-stream", 60, false)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 60\r\n\
             Connection: close\r\n\r\n"
        );
        assert_eq!(no_content(true), NO_CONTENT);
        assert_eq!(NO_CONTENT.len(), 112);
        assert_eq!(
            no_content(false),
            b"HTTP/1.1 204 No Content\r\nContent-Type: \r\nContent-Length: 0\r\n\
Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn command_answers_are_each_librarys_bytes() {
        let ack = br#"{"ack":12,"d":7}"#;
        // ESP8266WebServer, `server.send(200, "application/json", ack)` to a request that said
        // `Connection: close`: head, then body.
        let writes = web_server_response(200, "application/json", ack, false);
        assert_eq!(
            writes,
            [
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\
Connection: close\r\n\r\n"
                    .to_vec(),
                ack.to_vec()
            ]
        );
        // A sketch without the handler: `onNotFound`'s `send(404, "text/plain", "")`, one write.
        assert_eq!(
            web_server_response(404, "text/plain", b"", false).concat(),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\
Connection: close\r\n\r\n"
        );
        // ESPAsyncWebServer, `request->send(200, "application/json", ack)`: one write.
        assert_eq!(
            async_web_server_response(200, "application/json", ack, 1),
            [
                &b"HTTP/1.1 200 OK\r\nConnection: close\r\nAccept-Ranges: none\r\n\
Content-Length: 16\r\nContent-Type: application/json\r\n\r\n"[..],
                ack
            ]
            .concat()
        );
        // The SSE sketch's server, with its default CORS header first.
        assert_eq!(
            async_web_server_response_with_defaults(CORS_HEADER, 200, "application/json", ack, 1),
            [
                &b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\
Accept-Ranges: none\r\nContent-Length: 16\r\nContent-Type: application/json\r\n\r\n"[..],
                ack
            ]
            .concat()
        );
        assert_eq!(
            async_web_server_response_with_defaults(CORS_HEADER, 404, "", b"", 1),
            b"HTTP/1.1 404 Not Found\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\
Accept-Ranges: none\r\nContent-Length: 0\r\n\r\n"
        );
        // `request->send(404)`: no body, no type.
        assert_eq!(
            async_web_server_response(404, "", b"", 1),
            b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nAccept-Ranges: none\r\n\
Content-Length: 0\r\n\r\n"
        );
        assert_eq!(
            async_web_server_response(400, "", b"x", 0),
            b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\nContent-Length: 1\r\n\
Content-Type: text/plain\r\n\r\nx"
        );
    }

    #[test]
    fn command_requests_parse_back_and_responses_give_their_lengths() {
        let body = br#"{"cmd":"set-interval","d":7,"c":12,"t":15000000,"v":1000}"#;
        let request = command_request("127.1.0.8:8080", body);
        let (req, len) = parse_request(&request).unwrap().unwrap();
        assert_eq!((req.method.as_str(), req.path()), ("POST", COMMAND_PATH));
        assert_eq!(req.body_len, body.len());
        assert!(!req.keeps_alive());
        assert_eq!(&request[len..], body);
        assert_eq!(
            String::from_utf8_lossy(&request[..len]),
            format!(
                "POST /cmd HTTP/1.1\r\nHost: 127.1.0.8:8080\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
        );

        let response = async_web_server_response(200, "application/json", b"{}", 1);
        let head = parse_response(&response).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.head_len + head.body_len, response.len());
        assert_eq!(parse_response(&response[..10]), Ok(None));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(ResponseError::NoLength)
        );
        assert!(matches!(
            parse_response(b"\x00 nonsense\r\n\r\n"),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let req = |raw: &str| parse_request(raw.as_bytes()).unwrap().unwrap().0;
        assert!(req("GET / HTTP/1.1\r\nHost: d\r\n\r\n").keeps_alive());
        assert!(!req("GET / HTTP/1.0\r\nHost: d\r\n\r\n").keeps_alive());
        assert!(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keeps_alive());
        assert!(!req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keeps_alive());
    }

    #[test]
    fn readings_split_from_a_byte_stream() {
        let mut buf = b"[{\"id\":1},{\"id\":2}]{\"id\":3".to_vec();
        let got = split_readings(&mut buf, crate::Encoding::Json, 0);
        assert_eq!(got, vec![b"{\"id\":1}".to_vec(), b"{\"id\":2}".to_vec()]);
        assert_eq!(buf, b"{\"id\":3");
        let mut bin = vec![7u8; 60];
        assert_eq!(
            split_readings(&mut bin, crate::Encoding::Binary, 26).len(),
            2
        );
        assert_eq!(bin.len(), 8);
    }

    #[test]
    fn binary_records_are_26_bytes_in_the_first_boot_and_30_after_a_reboot() {
        use crate::{Encoding, Reading};
        let records = |boot: u32, n: u32| {
            let mut out = Vec::new();
            for seq in 0..n {
                let reading = Reading {
                    device_id: 1,
                    seq,
                    boot,
                    ..Reading::default()
                };
                Encoding::Binary.encode(&reading, &mut out);
            }
            out
        };
        // Whole answers, including 390 bytes, which both lengths divide.
        for n in [1, 2, 13, 15] {
            assert_eq!(binary_record_len(&records(0, n), true), Some(26), "{n}");
        }
        for n in [1, 2, 13, 15] {
            // Device 1 in boot 1: its boot equals its id, so only the later records tell.
            assert_eq!(binary_record_len(&records(1, n), true), Some(30), "{n}");
        }
        // A stream: undecided until a record's worth is in.
        assert_eq!(binary_record_len(&records(1, 1)[..20], false), None);
        assert_eq!(binary_record_len(&records(0, 1), false), Some(26));
        assert_eq!(binary_record_len(&records(1, 1), false), Some(30));
        let mut stream = records(1, 3);
        stream.truncate(80);
        let got = split_readings(&mut stream, Encoding::Binary, 30);
        assert_eq!(got.len(), 2);
        assert_eq!(
            Encoding::Binary.decode(&got[1]).map(|r| (r.seq, r.boot)),
            Ok((1, 1))
        );
    }
}
