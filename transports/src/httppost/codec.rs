//! The exact bytes of one reading POSTed the ESP8266HTTPClient way, and of the backend's answer,
//! over byte slices: no I/O.
//!
//! - [`request_head`] writes what `http.begin(client, "http://<host>:<port>/readings");
//!   http.addHeader("Content-Type", ...); http.POST(payload)` sends before the payload, byte for
//!   byte as the esp8266/Arduino 3.x core builds it; [`request_head_len`] is the same count as
//!   arithmetic, for byte accounting.
//! - [`parse_response`] is the device's incremental response parser: it says whether one whole
//!   response (head and `Content-Length` body) is buffered, and how long it is.
//! - [`NO_CONTENT`] is the shape of the backend's 204 as hyper writes it.
//!
//! The driver owns the sockets and decides what a non-2xx status or a [`ResponseError`] does to
//! the connection.
use std::net::SocketAddr;

use crate::command::{Command, CommandError};
use crate::Encoding;

/// The path every reading is POSTed to.
pub const PATH: &str = "/readings";

/// ESP8266HTTPClient's default `User-Agent`.
pub const USER_AGENT: &str = "ESP8266HTTPClient";

/// The `Accept-Encoding` ESP8266HTTPClient sends with every HTTP/1.1 request.
pub const ACCEPT_ENCODING: &str = "identity;q=1,chunked;q=0.1,*;q=0";

/// `Content-Type` of a JSON payload.
pub const JSON: &str = "application/json";

/// `Content-Type` of a binary payload.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The backend's answer to a reading, as hyper 1 writes a 204 with no headers of its own.
///
/// hyper adds a `date` header unless told not to; the backend keeps it, as a hyper (or axum)
/// backend does by default, so it is counted. Its value is an IMF-fixdate, always 29 bytes, so
/// the response is always [`NO_CONTENT_LEN`] bytes; only the date differs from this example.
/// hyper writes no `content-length` on a 204 (RFC 9110 §8.6 forbids it) and, for an HTTP/1.1
/// request, no `connection` header while the connection stays open.
pub const NO_CONTENT: &[u8] =
    b"HTTP/1.1 204 No Content\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";

/// Bytes of [`NO_CONTENT`]: 25 of status line, 37 of `date` header, 2 of blank line.
pub const NO_CONTENT_LEN: usize = NO_CONTENT.len();

/// Bytes of the `date` header line hyper adds to every response (`date: ` + 29 + CRLF).
pub const DATE_HEADER_LEN: usize = 37;

/// The longest response head the device buffers before giving up.
pub const MAX_RESPONSE_HEAD: usize = 4096;

/// The longest response body the device buffers before giving up.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// The request head's fixed lines after the request line and `Host`: `User-Agent`,
/// `Accept-Encoding` and `Connection`.
const FIXED_LINES: [&str; 3] = [
    "User-Agent: ESP8266HTTPClient\r\n",
    "Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\n",
    "Connection: keep-alive\r\n",
];

/// The `Content-Type` a device sends with `encoding`'s payloads.
pub fn content_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Json => JSON,
        Encoding::Binary => OCTET_STREAM,
    }
}

/// The encoding a `Content-Type` value names (parameters such as `; charset=utf-8` and case are
/// ignored), or `None` for any other media type.
pub fn encoding_of(content_type: &str) -> Option<Encoding> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case(JSON) {
        Some(Encoding::Json)
    } else if media_type.eq_ignore_ascii_case(OCTET_STREAM) {
        Some(Encoding::Binary)
    } else {
        None
    }
}

/// The `Host` header value for a sketch's `http://<target>/readings`: the address, with the port
/// unless it is 80 or 443, which ESP8266HTTPClient leaves out.
pub fn host_port(target: SocketAddr) -> String {
    match target.port() {
        80 | 443 => match target {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        },
        _ => target.to_string(),
    }
}

/// Appends everything ESP8266HTTPClient writes before a POST's body: the request line, `Host`,
/// `User-Agent`, `Accept-Encoding`, `Connection: keep-alive`, the sketch's `Content-Type`, the
/// `Content-Length` the library adds, and the blank line. The order is the 3.x core's:
/// `sendHeader` writes its own headers, then those added with `addHeader` in the order added
/// (`Content-Type` by the sketch, `Content-Length` by `sendRequest`).
pub fn request_head(host_port: &str, content_type: &str, body_len: usize, out: &mut Vec<u8>) {
    client_head("POST", PATH, host_port, Some((content_type, body_len)), out);
}

/// Bytes [`request_head`] writes, without writing them.
///
/// For the usual `127.0.0.1:<5-digit port>` target, a JSON payload of 10 to 99 bytes (the
/// emulator's are 80 to 90) costs exactly **208 B**: the reference's "~208 B" is this case.
/// Every other case moves from there byte for byte: a binary payload's `application/octet-stream`
/// is 8 bytes longer than `application/json` (216 B for a 26-byte record); each digit of the port
/// or of the host, and each digit of the payload length past two, adds one.
pub fn request_head_len(host_port: &str, content_type: &str, body_len: usize) -> usize {
    client_head_len("POST", PATH, host_port, Some((content_type, body_len)))
}

/// Appends the head ESP8266HTTPClient writes for a `method` request to `path` (query
/// included): the request line, `Host`, its own three headers, then, for a request with a
/// `body` (its content type and length), `Content-Type` and `Content-Length`, and the blank
/// line. A GET has no body: `sendRequest` adds no `Content-Length` for an empty payload.
pub fn client_head(
    method: &str,
    path: &str,
    host_port: &str,
    body: Option<(&str, usize)>,
    out: &mut Vec<u8>,
) {
    out.reserve(client_head_len(method, path, host_port, body));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host_port.as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in FIXED_LINES {
        out.extend_from_slice(line.as_bytes());
    }
    if let Some((content_type, body_len)) = body {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(body_len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Bytes [`client_head`] writes, without writing them.
pub fn client_head_len(
    method: &str,
    path: &str,
    host_port: &str,
    body: Option<(&str, usize)>,
) -> usize {
    let request_line = method.len() + " ".len() + path.len() + " HTTP/1.1\r\n".len();
    let fixed: usize = FIXED_LINES.iter().map(|line| line.len()).sum();
    let host = "Host: \r\n".len() + host_port.len();
    let body_headers = body.map_or(0, |(content_type, body_len)| {
        "Content-Type: \r\n".len()
            + content_type.len()
            + "Content-Length: \r\n".len()
            + decimal_digits(body_len)
    });
    request_line + host + fixed + body_headers + "\r\n".len()
}

fn decimal_digits(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Why the bytes received are not an HTTP/1.1 response the device can use. Each one leaves the
/// connection unusable: the device cannot tell where the next response would start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The first line is not `HTTP/1.<digit> <3-digit status>[ <reason>]`.
    #[error("not an HTTP/1.x status line")]
    StatusLine,
    /// A header line without a `:` or with an empty name.
    #[error("malformed header line")]
    HeaderLine,
    /// No blank line within [`MAX_RESPONSE_HEAD`] bytes.
    #[error("response head longer than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    /// A `Content-Length` that is not a decimal number, or two that disagree.
    #[error("invalid Content-Length")]
    ContentLength,
    /// A body longer than [`MAX_RESPONSE_BODY`].
    #[error("response body of {0} bytes exceeds {MAX_RESPONSE_BODY}")]
    BodyTooLarge(usize),
    /// A `Transfer-Encoding` (chunked): the backend never sends one, so the device refuses it.
    #[error("Transfer-Encoding is not supported")]
    TransferEncoding,
    /// A status that carries a body, but no `Content-Length`: the body would run to the close.
    #[error("status {0} without a Content-Length")]
    MissingLength(u16),
}

/// One whole response at the start of a buffer, as [`frame_response`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framed {
    /// Its status code.
    pub status: u16,
    /// Bytes of its head, blank line included: the body starts there.
    pub head_len: usize,
    /// Bytes of the whole response, head and body.
    pub len: usize,
}

impl Framed {
    /// Its body, in `buf` (the buffer it was framed in).
    pub fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.head_len..self.len]
    }
}

/// Checks whether `buf` starts with one whole response; if so returns its status and its length
/// in bytes, head and body (so the caller consumes exactly that), and `Ok(None)` while more bytes
/// are needed. [`frame_response`] with the status and length only.
pub fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize)>, ResponseError> {
    Ok(frame_response(buf)?.map(|framed| (framed.status, framed.len)))
}

/// Checks whether `buf` starts with one whole response; if so returns where its head ends and
/// how long it is (so the caller consumes exactly that), and `Ok(None)` while more bytes are
/// needed.
///
/// Lines end in CRLF. Responses to a POST have a body exactly when the status is neither 1xx, 204
/// nor 304; its length must be given by `Content-Length` (header names are matched without regard
/// to case, values trimmed of spaces and tabs). A `Transfer-Encoding` of any kind is refused.
pub fn frame_response(buf: &[u8]) -> Result<Option<Framed>, ResponseError> {
    let Some(head_len) = find_head_end(buf)? else {
        // A status line can be refused before the head is complete.
        if let Some(line_end) = find(buf, b"\r\n") {
            parse_status_line(&buf[..line_end])?;
        }
        return Ok(None);
    };
    // Every line of the head, status line included, ends in CRLF; the blank line is left out.
    let mut lines = buf[..head_len - 2]
        .split_inclusive(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r\n").unwrap_or(line));
    let status = parse_status_line(lines.next().unwrap_or_default())?;
    let mut content_length = None;
    for line in lines {
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(ResponseError::HeaderLine);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ResponseError::HeaderLine)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(ResponseError::HeaderLine);
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(ResponseError::TransferEncoding);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let len = parse_decimal(value).ok_or(ResponseError::ContentLength)?;
            if content_length.is_some_and(|earlier| earlier != len) {
                return Err(ResponseError::ContentLength);
            }
            content_length = Some(len);
        }
    }
    let body_len = if matches!(status, 100..=199 | 204 | 304) {
        0
    } else {
        content_length.ok_or(ResponseError::MissingLength(status))?
    };
    if body_len > MAX_RESPONSE_BODY {
        return Err(ResponseError::BodyTooLarge(body_len));
    }
    let len = head_len + body_len;
    Ok((buf.len() >= len).then_some(Framed {
        status,
        head_len,
        len,
    }))
}

/// The length of the head including its blank line, once buffered.
fn find_head_end(buf: &[u8]) -> Result<Option<usize>, ResponseError> {
    let window = &buf[..buf.len().min(MAX_RESPONSE_HEAD)];
    match find(window, b"\r\n\r\n") {
        Some(at) => Ok(Some(at + 4)),
        None if buf.len() >= MAX_RESPONSE_HEAD => Err(ResponseError::HeadTooLarge),
        None => Ok(None),
    }
}

/// `HTTP/1.<digit> <ddd>` then the end or a space and a reason phrase.
fn parse_status_line(line: &[u8]) -> Result<u16, ResponseError> {
    if line.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(ResponseError::StatusLine);
    }
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .ok_or(ResponseError::StatusLine)?;
    match rest {
        [minor, b' ', d0, d1, d2, tail @ ..]
            if minor.is_ascii_digit()
                && [d0, d1, d2].iter().all(|d| d.is_ascii_digit())
                && *d0 != b'0'
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            Ok([d0, d1, d2]
                .iter()
                .fold(0u16, |n, &&d| n * 10 + u16::from(d - b'0')))
        }
        _ => Err(ResponseError::StatusLine),
    }
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0')),
    )
}

fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The path a device POSTs a command's acknowledgement to (body:
/// [`Ack::encode`](crate::command::Ack::encode)).
pub const ACK_PATH: &str = "/ack";

/// `Content-Type` of a response carrying commands: one command's JSON per line.
pub const COMMANDS_CONTENT_TYPE: &str = "application/x-ndjson";

/// The status line of a response carrying commands.
const OK_LINE: &str = "HTTP/1.1 200 OK\r\n";

/// Appends the body of a response carrying `commands`: each one's JSON ([`Command::encode`])
/// and a newline, in order. Returns how many bytes it appended.
pub fn commands_body(commands: &[Command], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    for command in commands {
        command.encode(out);
        out.push(b'\n');
    }
    out.len() - start
}

/// The lines of a response body that carries commands, blank ones skipped: one command's JSON
/// each, in order (each command's share of the response is counted over these).
pub fn command_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
}

/// The commands a response body holds, one per line (blank lines skipped), in order.
pub fn parse_commands(body: &[u8]) -> Result<Vec<Command>, CommandError> {
    command_lines(body).map(Command::parse).collect()
}

/// Bytes of the backend's response carrying a body of `body_len` bytes of commands, as hyper 1
/// writes it: the status line, `content-type` ([`COMMANDS_CONTENT_TYPE`]), the
/// `content-length` hyper adds, its `date` header (always [`DATE_HEADER_LEN`]), the blank line
/// and the body:
///
/// ```text
/// HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: 71\r\ndate: …\r\n\r\n{"cmd":…}\n
/// ```
pub fn commands_response_len(body_len: usize) -> usize {
    OK_LINE.len()
        + "content-type: \r\n".len()
        + COMMANDS_CONTENT_TYPE.len()
        + "content-length: \r\n".len()
        + decimal_digits(body_len)
        + DATE_HEADER_LEN
        + "\r\n".len()
        + body_len
}

/// Command `index`'s share of a message of `total` bytes that carried `count` commands (a
/// response carrying several, or the poll that fetched them): `total / count`, the first
/// `total % count` commands one byte more, so the shares add up to `total` exactly.
pub fn share_of(total: usize, count: usize, index: usize) -> usize {
    if count == 0 {
        return 0;
    }
    total / count + usize::from(index < total % count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "127.0.0.1:54321";

    fn head(host_port: &str, content_type: &str, body_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        request_head(host_port, content_type, body_len, &mut out);
        out
    }

    #[test]
    fn json_head_is_the_librarys_byte_for_byte() {
        let expected = "POST /readings HTTP/1.1\r\n\
                        Host: 127.0.0.1:54321\r\n\
                        User-Agent: ESP8266HTTPClient\r\n\
                        Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\n\
                        Connection: keep-alive\r\n\
                        Content-Type: application/json\r\n\
                        Content-Length: 86\r\n\
                        \r\n";
        assert_eq!(String::from_utf8(head(HOST, JSON, 86)).unwrap(), expected);
        // 25 request line + 23 Host + 31 User-Agent + 51 Accept-Encoding + 24 Connection
        // + 32 Content-Type + 20 Content-Length + 2 blank line.
        assert_eq!(expected.len(), 208);
        for line in [
            format!("POST {PATH} HTTP/1.1\r\n"),
            format!("User-Agent: {USER_AGENT}\r\n"),
            format!("Accept-Encoding: {ACCEPT_ENCODING}\r\n"),
        ] {
            assert!(expected.contains(&line), "{line}");
        }
    }

    #[test]
    fn head_sizes_for_the_usual_target() {
        // An 86-byte JSON reading, the emulator's typical one.
        assert_eq!(request_head_len(HOST, JSON, 86), 208);
        // A binary record: `application/octet-stream` is 8 bytes longer.
        assert_eq!(request_head_len(HOST, OCTET_STREAM, 26), 216);
        // One more digit of payload length, one less of port.
        assert_eq!(request_head_len(HOST, JSON, 100), 209);
        assert_eq!(request_head_len("127.0.0.1:8080", JSON, 86), 207);
        // Port 80 is left out of `Host`.
        assert_eq!(request_head_len("127.0.0.1", JSON, 86), 202);
    }

    #[test]
    fn head_len_matches_what_is_written() {
        for host in ["a", HOST, "[::1]:8080", "sensors.example.org"] {
            for content_type in [JSON, OCTET_STREAM] {
                for len in [0, 1, 9, 10, 86, 99, 100, 999, 1000, 123_456] {
                    let written = head(host, content_type, len);
                    assert_eq!(written.len(), request_head_len(host, content_type, len));
                    assert!(written.ends_with(format!(": {len}\r\n\r\n").as_bytes()));
                }
            }
        }
    }

    #[test]
    fn request_head_appends() {
        let mut out = b"prefix".to_vec();
        request_head(HOST, JSON, 5, &mut out);
        assert!(out.starts_with(b"prefixPOST /readings "));
    }

    #[test]
    fn host_port_leaves_out_default_ports() {
        let host = |s: &str| host_port(s.parse().unwrap());
        assert_eq!(host("127.0.0.1:54321"), "127.0.0.1:54321");
        assert_eq!(host("10.0.0.2:80"), "10.0.0.2");
        assert_eq!(host("10.0.0.2:443"), "10.0.0.2");
        assert_eq!(host("[::1]:8080"), "[::1]:8080");
        assert_eq!(host("[::1]:80"), "[::1]");
    }

    #[test]
    fn content_types_name_the_encodings() {
        for encoding in [Encoding::Json, Encoding::Binary] {
            assert_eq!(encoding_of(content_type(encoding)), Some(encoding));
        }
        assert_eq!(
            encoding_of("Application/JSON; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            encoding_of(" application/octet-stream "),
            Some(Encoding::Binary)
        );
        assert_eq!(encoding_of("text/plain"), None);
        assert_eq!(encoding_of(""), None);
    }

    #[test]
    fn no_content_is_hypers_shape() {
        assert_eq!(NO_CONTENT_LEN, 64);
        assert_eq!(
            NO_CONTENT_LEN,
            "HTTP/1.1 204 No Content\r\n".len() + DATE_HEADER_LEN + 2
        );
        assert_eq!("Sun, 06 Nov 1994 08:49:37 GMT".len() + 8, DATE_HEADER_LEN);
    }

    #[test]
    fn no_content_parses_whole_and_only_whole() {
        assert_eq!(parse_response(NO_CONTENT), Ok(Some((204, NO_CONTENT_LEN))));
        for cut in 0..NO_CONTENT_LEN {
            assert_eq!(parse_response(&NO_CONTENT[..cut]), Ok(None), "{cut}");
        }
        // The next response's bytes are left for later.
        let mut two = NO_CONTENT.to_vec();
        two.extend_from_slice(NO_CONTENT);
        assert_eq!(parse_response(&two), Ok(Some((204, NO_CONTENT_LEN))));
    }

    #[test]
    fn a_body_is_waited_for_and_consumed() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(response), Ok(Some((200, response.len()))));
        assert_eq!(parse_response(&response[..response.len() - 1]), Ok(None));
        let hyper_400 =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        assert_eq!(parse_response(hyper_400), Ok(Some((400, hyper_400.len()))));
        let spaced =
            b"HTTP/1.0 404 Not Found\r\nCONTENT-LENGTH:\t 2 \r\nContent-Length: 2\r\n\r\nno";
        assert_eq!(parse_response(spaced), Ok(Some((404, spaced.len()))));
        let reasonless = b"HTTP/1.1 304\r\n\r\n";
        assert_eq!(
            parse_response(reasonless),
            Ok(Some((304, reasonless.len())))
        );
    }

    #[test]
    fn responses_the_device_cannot_frame_are_refused() {
        let cases: [(&[u8], ResponseError); 9] = [
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                ResponseError::MissingLength(200),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                ResponseError::TransferEncoding,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                ResponseError::ContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                ResponseError::ContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n",
                ResponseError::BodyTooLarge(99_999),
            ),
            (
                b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                ResponseError::HeaderLine,
            ),
            (
                b"HTTP/1.1 200 OK\r\n: empty\r\n\r\n",
                ResponseError::HeaderLine,
            ),
            (b"HTTP/2 200 OK\r\n\r\n", ResponseError::StatusLine),
            (b"SSH-2.0-OpenSSH\r\n", ResponseError::StatusLine),
        ];
        for (bytes, error) in cases {
            assert_eq!(
                parse_response(bytes),
                Err(error),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        for line in [
            "HTTP/1.1 20 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.x 200 OK",
            "HTTP/1.1 099 X",
        ] {
            let bytes = format!("{line}\r\n\r\n");
            assert_eq!(
                parse_response(bytes.as_bytes()),
                Err(ResponseError::StatusLine),
                "{line}"
            );
        }
    }

    fn command(device_id: u32, seq: u32, size: u32) -> Command {
        Command {
            device_id,
            seq,
            due_us: 15_000_000,
            op: crate::command::CommandOp::SetInterval { ms: 1000 },
            size,
        }
    }

    #[test]
    fn an_ack_is_posted_as_a_reading_is_to_its_own_path() {
        let mut out = Vec::new();
        client_head("POST", ACK_PATH, HOST, Some((JSON, 16)), &mut out);
        let expected = "POST /ack HTTP/1.1\r\n\
                        Host: 127.0.0.1:54321\r\n\
                        User-Agent: ESP8266HTTPClient\r\n\
                        Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\n\
                        Connection: keep-alive\r\n\
                        Content-Type: application/json\r\n\
                        Content-Length: 16\r\n\
                        \r\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        // 5 bytes shorter than a reading's head (`/ack` against `/readings`): 203, and with
        // `{"ack":12,"d":7}` 219 bytes in all.
        assert_eq!(expected.len(), 203);
        assert_eq!(
            client_head_len("POST", ACK_PATH, HOST, Some((JSON, 16))),
            203
        );
        let mut reading = Vec::new();
        client_head("POST", PATH, HOST, Some((JSON, 86)), &mut reading);
        assert_eq!(reading, head(HOST, JSON, 86));
    }

    #[test]
    fn commands_ride_a_response_one_per_line_and_parse_back() {
        let commands = [command(7, 0, 64), command(7, 1, 0), command(7, 2, 100)];
        let mut body = Vec::new();
        let len = commands_body(&commands, &mut body);
        assert_eq!(len, body.len());
        assert_eq!(len, 64 + 1 + commands[1].unpadded_len() + 1 + 100 + 1);
        assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 3);
        let parsed = parse_commands(&body).unwrap();
        assert_eq!(parsed.len(), 3);
        for (got, sent) in parsed.iter().zip(&commands) {
            assert_eq!(
                (got.device_id, got.seq, got.op),
                (sent.device_id, sent.seq, sent.op)
            );
        }
        assert_eq!(parse_commands(b"\n\n").unwrap(), []);
        assert!(parse_commands(b"{\"ack\":1,\"d\":2}\n").is_err());
    }

    #[test]
    fn a_commands_response_is_framed_as_its_length_says() {
        let mut body = Vec::new();
        commands_body(&[command(7, 0, 64)], &mut body);
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {COMMANDS_CONTENT_TYPE}\r\ncontent-length: {}\r\n\
             date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        assert_eq!(commands_response_len(body.len()), response.len());
        assert_eq!(response.len(), 177);
        let framed = frame_response(&response).unwrap().unwrap();
        assert_eq!(framed.status, 200);
        assert_eq!(framed.len, response.len());
        assert_eq!(framed.body(&response), &body[..]);
    }

    #[test]
    fn shares_add_up_to_the_whole() {
        for (total, count) in [(193, 1), (200, 3), (7, 7), (5, 9), (1000, 16)] {
            let shares: Vec<usize> = (0..count).map(|i| share_of(total, count, i)).collect();
            assert_eq!(shares.iter().sum::<usize>(), total, "{total}/{count}");
            let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(max - min <= 1, "{shares:?}");
        }
        assert_eq!(share_of(10, 0, 0), 0);
    }

    #[test]
    fn an_endless_head_is_refused() {
        let mut bytes = b"HTTP/1.1 204 No Content\r\n".to_vec();
        while bytes.len() < MAX_RESPONSE_HEAD {
            assert_eq!(parse_response(&bytes), Ok(None));
            bytes.extend_from_slice(b"x-filler: 0123456789\r\n");
        }
        assert_eq!(parse_response(&bytes), Err(ResponseError::HeadTooLarge));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Mostly bytes that responses are made of, so deep paths are reached.
        let alphabet = b"HTTP/1.1 204\r\n:content-length:0123456789 \t";
        for _ in 0..20_000 {
            let len = rng.random_range(0..96);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.random_ratio(1, 8) {
                        rng.random()
                    } else {
                        alphabet[rng.random_range(0..alphabet.len())]
                    }
                })
                .collect();
            let _ = parse_response(&bytes);
        }
        for prefix in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"[..],
            NO_CONTENT,
        ] {
            for cut in 0..=prefix.len() {
                let _ = parse_response(&prefix[..cut]);
            }
        }
    }
}
