//! Server-Sent Events served by the device, as ESPAsyncWebServer's AsyncEventSource does:
//! `GET /events` answered with `text/event-stream`, one `id: <seq>` / `data: <reading>` event per
//! reading (no `id:` for seq 0: the library writes none for id 0). A collector that reconnects sends `Last-Event-ID` and the device replays what its
//! small buffer still holds (8 readings on ESP8266); older readings are lost.
//!
//! The sketch adds `Access-Control-Allow-Origin: *` to its server's responses
//! ([`http::CORS_HEADER`]), so a dashboard page served from another origin may subscribe with the
//! browser's own EventSource; such a client sends `Origin`, which the device keeps
//! ([`ServedConnection::origin`]).

use http_body_util::Empty;

use super::http::Request;
use super::{
    expect_get, http, receive_stream, stream_readings, CollectorConn, DeviceConn, HeadError,
    ServedConnection,
};
use crate::sink::ConnectionEnd;
use crate::Encoding;

/// Serves one collector whose first request is `first` (read by the accept loop): the event
/// stream, replaying after its `Last-Event-ID`.
pub async fn serve(mut conn: DeviceConn, first: Result<Request, HeadError>) -> ServedConnection {
    let mut served = ServedConnection::new(conn.peer);
    let mut stopped = false;
    served.end = match expect_get(&mut conn, first, "/events").await {
        Err(e) => e,
        Ok(_) if conn.options.encoding == Encoding::Binary => {
            let _ = conn.write(&http::error_response(400)).await;
            "SSE carries text: the binary encoding cannot be served".to_string()
        }
        Ok(req) => {
            served.origin = req.header("origin").map(str::to_owned);
            // AsyncEventSourceClient takes the header with atoi: what does not parse, and 0, is
            // 0, which the sketch's onConnect takes as "nothing seen" and replays nothing for.
            let after = req
                .header("last-event-id")
                .and_then(|id| id.trim().parse::<u32>().ok())
                .filter(|id| *id != 0);
            // Subscribe before the head goes out, so no reading falls between the two.
            let mut subscription = conn.outbox.subscribe(after);
            match conn.write(http::SSE_HEAD).await {
                Err(e) => e.to_string(),
                Ok(()) => {
                    served.setup = Some(conn.ready());
                    let replay = std::mem::take(&mut subscription.replay);
                    match write_replay(&mut conn, &replay).await {
                        Err(e) => e.to_string(),
                        Ok(payload) => {
                            let mut json = Vec::with_capacity(128);
                            let streamed =
                                stream_readings(&mut conn, subscription, |reading, writes| {
                                    json.clear();
                                    Encoding::Json.encode(reading, &mut json);
                                    let mut event = Vec::with_capacity(json.len() + 24);
                                    http::sse_event(reading.seq, &json, &mut event);
                                    writes.push(event);
                                    json.len()
                                })
                                .await;
                            served.readings_sent = replay.len() as u64 + streamed.readings;
                            served.payload_bytes = payload + streamed.payload_bytes;
                            stopped = streamed.stopped;
                            streamed.end
                        }
                    }
                }
            }
        }
    };
    served.final_stats = conn.stats();
    if stopped {
        // AsyncEventSource closes its clients with a plain TCP close: FIN, nothing before it.
        served.closed_stats = conn.close(&[]).await;
    }
    served
}

/// Writes the readings replayed to a collector that resumed, as AsyncEventSource's queue sends
/// what the sketch's onConnect queues: the first event at once (the queue was empty), the rest
/// held until that one is acknowledged and then written together (they go out in segments of
/// up to the MSS). Returns their payload bytes.
async fn write_replay(conn: &mut DeviceConn, replay: &[crate::Reading]) -> std::io::Result<u64> {
    let mut payload = 0u64;
    let mut json = Vec::with_capacity(128);
    let mut batch = Vec::new();
    for (i, reading) in replay.iter().enumerate() {
        json.clear();
        Encoding::Json.encode(reading, &mut json);
        payload += json.len() as u64;
        http::sse_event(reading.seq, &json, &mut batch);
        if i == 0 {
            conn.write(&batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        conn.write(&batch).await?;
    }
    Ok(payload)
}

/// One event: its `id` and its `data` (lines joined with `\n`, as the HTML spec says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` field.
    pub data: Vec<u8>,
}

/// Takes whole events off the front of `buf` (each ends with a blank line; LF or CRLF).
pub fn parse_events(buf: &mut Vec<u8>) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        // An event ends at a blank line: LF LF, or CRLF CRLF.
        let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
        let crlf = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, 4));
        let Some((end, len)) = [lf, crlf].into_iter().flatten().min() else {
            return events;
        };
        let block: Vec<u8> = buf.drain(..end + len).collect();
        let mut event = Event {
            id: None,
            data: Vec::new(),
        };
        let mut has_data = false;
        for line in block.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (field, value) = match line.iter().position(|b| *b == b':') {
                Some(i) => (
                    &line[..i],
                    line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..]),
                ),
                None => (line, &b""[..]),
            };
            match field {
                b"id" => event.id = Some(String::from_utf8_lossy(value).into_owned()),
                b"data" => {
                    if has_data {
                        event.data.push(b'\n');
                    }
                    event.data.extend_from_slice(value);
                    has_data = true;
                }
                _ => {}
            }
        }
        if has_data {
            events.push(event);
        }
    }
}

/// Receives the event stream of one device (an EventSource), sending `Last-Event-ID` when it
/// has seen readings before.
pub async fn receive(c: &mut CollectorConn<'_>) -> ConnectionEnd {
    let mut request = hyper::Request::get("/events")
        .header("Host", c.device.to_string())
        .header("Accept", "text/event-stream")
        .header("Cache-Control", "no-cache");
    // An EventSource sends the last `id:` it saw; the event of reading 0 carries none (see
    // `http::sse_event`), so after it alone there is nothing to send.
    if let Some(seq) = c.cursor.seq().filter(|seq| *seq != 0) {
        request = request.header("Last-Event-ID", seq.to_string());
    }
    let request = request.body(Empty::new()).expect("valid request");
    receive_stream(c, request, |buf| {
        parse_events(buf)
            .into_iter()
            .map(|event| {
                Encoding::Json
                    .decode(&event.data)
                    .map(|reading| (reading, event.data.len()))
                    .map_err(|e| e.to_string())
            })
            .collect()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_with_lf_crlf_and_multi_line_data() {
        let mut buf = b"id: 7\ndata: {\"a\":1}\n\nid: 8\r\ndata: x\r\ndata: y\r\n\r\n: comment\n\nid: 9\ndata: part".to_vec();
        let events = parse_events(&mut buf);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].data, b"{\"a\":1}");
        assert_eq!(events[1].id.as_deref(), Some("8"));
        assert_eq!(events[1].data, b"x\ny", "data lines join with LF");
        assert_eq!(
            buf, b"id: 9\ndata: part",
            "an unfinished event waits; a comment is no event"
        );
    }
}
