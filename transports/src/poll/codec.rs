//! The bytes of one poll for commands, as ESP8266HTTPClient sends it, and the query the
//! backend reads the device from, over byte slices and strings: no I/O.
//!
//! A poll is `http.begin(client, "http://<host>:<port>/commands?device=<id>"); http.GET()`:
//!
//! ```text
//! GET /commands?device=7 HTTP/1.1\r\nHost: 127.0.0.1:54321\r\nUser-Agent: ESP8266HTTPClient\r\n
//! Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\nConnection: keep-alive\r\n\r\n
//! ```
//!
//! The answer is the http-post backend's: `204` when the hold passed with nothing for the
//! device, else `200` with its commands one per line
//! ([`commands_response_len`](crate::httppost::codec::commands_response_len)).

use crate::httppost::codec::{client_head, client_head_len};

/// The path a device polls for its commands.
pub const COMMANDS_PATH: &str = "/commands";

/// The path and query of `device_id`'s poll: `/commands?device=<id>`.
pub fn poll_path(device_id: u32) -> String {
    format!("{COMMANDS_PATH}?device={device_id}")
}

/// Appends the whole request a device sends to poll for its commands (a GET: no body).
pub fn request_head(host_port: &str, device_id: u32, out: &mut Vec<u8>) {
    client_head("GET", &poll_path(device_id), host_port, None, out);
}

/// Bytes [`request_head`] writes, without writing them: 164 for device 7 of a
/// `127.0.0.1:<5-digit port>` backend, one more per digit of the device id past one.
pub fn request_head_len(host_port: &str, device_id: u32) -> usize {
    client_head_len("GET", &poll_path(device_id), host_port, None)
}

/// The device a poll's query names (`device=<id>`, among any other `&`-separated pairs; the
/// first wins), or `None` when it names none or not a decimal id.
pub fn device_of_query(query: Option<&str>) -> Option<u32> {
    let value = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("device="))?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "127.0.0.1:54321";

    #[test]
    fn a_poll_is_the_librarys_get_byte_for_byte() {
        let mut out = Vec::new();
        request_head(HOST, 7, &mut out);
        let expected = "GET /commands?device=7 HTTP/1.1\r\n\
                        Host: 127.0.0.1:54321\r\n\
                        User-Agent: ESP8266HTTPClient\r\n\
                        Accept-Encoding: identity;q=1,chunked;q=0.1,*;q=0\r\n\
                        Connection: keep-alive\r\n\
                        \r\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert_eq!(expected.len(), 164);
        for (device, len) in [(0, 164), (7, 164), (42, 165), (1000, 167)] {
            let mut out = Vec::new();
            request_head(HOST, device, &mut out);
            assert_eq!(out.len(), len, "{device}");
            assert_eq!(request_head_len(HOST, device), len, "{device}");
        }
    }

    #[test]
    fn the_backend_reads_the_device_from_the_query() {
        assert_eq!(device_of_query(Some("device=7")), Some(7));
        assert_eq!(device_of_query(Some("x=1&device=42&device=3")), Some(42));
        assert_eq!(device_of_query(Some("device=4294967295")), Some(u32::MAX));
        for bad in [
            "",
            "device=",
            "device=-1",
            "device=7x",
            "device=4294967296",
            "dev=7",
        ] {
            assert_eq!(device_of_query(Some(bad)), None, "{bad}");
        }
        assert_eq!(device_of_query(None), None);
    }
}
