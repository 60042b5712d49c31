//! The HTTP a device server speaks, as bytes: request heads parsed with httparse, and the exact
//! response heads, SSE events and chunks the ESP8266 libraries write. Pure; no I/O.

use std::io::Write;

/// Largest request head a device accepts (ESP8266WebServer keeps far less).
pub const MAX_HEAD: usize = 2048;

/// A parsed request head (device servers take no request bodies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, …
    pub method: String,
    /// The target, query included: `/readings?after=41`.
    pub target: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
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
    /// Not HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A body was announced; device servers take none.
    #[error("request with a body")]
    HasBody,
}

/// Parses a request head at the start of `buf`: `Ok(None)` until it is whole; then the request
/// and the bytes it took.
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
            let request = Request {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                headers,
            };
            let has_body = request
                .header("content-length")
                .is_some_and(|l| l.trim() != "0")
                || request.header("transfer-encoding").is_some();
            if has_body {
                return Err(RequestError::HasBody);
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

/// AsyncEventSource's response head.
pub const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
Cache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n";

/// One SSE event: `id: <seq>\ndata: <payload>\n\n` (the payload must be one line).
pub fn sse_event(seq: u32, payload: &[u8], out: &mut Vec<u8>) {
    let _ = write!(out, "id: {seq}\ndata: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

/// Framing bytes of an SSE event for `seq`: the `id:` line, `data: ` and the two newlines.
pub fn sse_framing(seq: u32) -> usize {
    "id: ".len() + seq.to_string().len() + 1 + "data: ".len() + 2
}

/// ESP8266WebServer's head for a response of unknown length (`CONTENT_LENGTH_UNKNOWN`), sent as
/// chunks.
pub fn stream_head(content_type: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// One chunk: `<hex length>\r\n<data>\r\n`.
pub fn chunk(data: &[u8], out: &mut Vec<u8>) {
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Framing bytes of a chunk of `len` bytes.
pub fn chunk_framing(len: usize) -> usize {
    format!("{len:x}").len() + 4
}

/// The head of a long-poll answer with a body of `len` bytes.
pub fn ok_head(content_type: &str, len: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Connection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

/// A long-poll answer with nothing newer.
pub const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n";

/// The content type of a payload encoding.
pub fn content_type(encoding: crate::Encoding) -> &'static str {
    match encoding {
        crate::Encoding::Json => "application/json",
        crate::Encoding::Binary => "application/octet-stream",
    }
}

/// Splits whole readings off the front of `buf`: a JSON reading is a flat object (it ends at
/// the first `}`), a binary one is a fixed-size record. Returns the payloads.
pub fn split_readings(buf: &mut Vec<u8>, encoding: crate::Encoding) -> Vec<Vec<u8>> {
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
            crate::Encoding::Binary => (buf.len() >= crate::encoding::binary::RECORD_LEN)
                .then_some(crate::encoding::binary::RECORD_LEN),
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
        assert_eq!(
            parse_request(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            Err(RequestError::HasBody)
        );
        let huge = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse_request(huge.as_bytes()), Err(RequestError::TooLarge));
    }

    #[test]
    fn sse_and_chunk_framing_are_exact() {
        let mut out = Vec::new();
        sse_event(42, b"{\"a\":1}", &mut out);
        assert_eq!(out, b"id: 42\ndata: {\"a\":1}\n\n");
        assert_eq!(out.len() - 7, sse_framing(42));
        assert_eq!(sse_framing(7), 14);
        out.clear();
        chunk(&[b'x'; 60], &mut out);
        assert_eq!(&out[..4], b"3c\r\n");
        assert_eq!(out.len() - 60, 6, "wire-formats.md: 6 B for a 60 B chunk");
        assert_eq!(chunk_framing(60), 6);
        assert_eq!(chunk_framing(300), 7);
    }

    #[test]
    fn readings_split_from_a_byte_stream() {
        let mut buf = b"[{\"id\":1},{\"id\":2}]{\"id\":3".to_vec();
        let got = split_readings(&mut buf, crate::Encoding::Json);
        assert_eq!(got, vec![b"{\"id\":1}".to_vec(), b"{\"id\":2}".to_vec()]);
        assert_eq!(buf, b"{\"id\":3");
        let mut bin = vec![7u8; 60];
        assert_eq!(split_readings(&mut bin, crate::Encoding::Binary).len(), 2);
        assert_eq!(bin.len(), 8);
    }
}
