//! HTTP streaming served by the device, as an ESP8266WebServer sketch does with
//! `setContentLength(CONTENT_LENGTH_UNKNOWN)`, `send(200, type, "")` and `sendContent` per
//! reading: `GET /stream` answered with a chunked response, one chunk per reading (framing: the
//! hex length and two CRLFs, in three writes as `sendContent` makes them), ended by the last
//! chunk when the device stops. Nothing is replayed: readings due while no collector is
//! connected are lost.

use http_body_util::Empty;

use super::http::Request;
use super::{
    expect_get, http, receive_stream, stream_readings, CollectorConn, DeviceConn, HeadError,
    ServedConnection,
};
use crate::sink::ConnectionEnd;

/// Serves one collector whose first request is `first` (read by the accept loop): the endless
/// chunked response.
pub async fn serve(mut conn: DeviceConn, first: Result<Request, HeadError>) -> ServedConnection {
    let mut served = ServedConnection::new(conn.peer);
    let mut stopped = false;
    served.end = match expect_get(&mut conn, first, "/stream").await {
        Err(e) => e,
        Ok(req) => {
            let encoding = conn.options.encoding;
            let subscription = conn.outbox.subscribe(None);
            let head = http::stream_head(http::content_type(encoding), req.keeps_alive());
            match conn.write(&head).await {
                Err(e) => e.to_string(),
                Ok(()) => {
                    served.setup = Some(conn.ready());
                    let streamed = stream_readings(&mut conn, subscription, |reading, writes| {
                        let mut payload = Vec::with_capacity(128);
                        encoding.encode(reading, &mut payload);
                        let len = payload.len();
                        let [size, data, end] = http::chunk_writes(&payload);
                        writes.extend([size, data, end]);
                        len
                    })
                    .await;
                    served.readings_sent = streamed.readings;
                    served.payload_bytes = streamed.payload_bytes;
                    stopped = streamed.stopped;
                    streamed.end
                }
            }
        }
    };
    served.final_stats = conn.stats();
    if stopped {
        // The handler returns: ESP8266WebServer ends the chunked response (`sendContent("")`)
        // and the connection closes.
        served.closed_stats = conn.close(&http::LAST_CHUNK_WRITES).await;
    }
    served
}

/// Receives one device's chunked stream; each reading is stamped when its last byte is read.
/// hyper hands over a chunk's data as it reads it, possibly in pieces: readings are delimited by
/// their own syntax (flat JSON objects, binary records of the stream's one length,
/// [`http::binary_record_len`]; a record of another device id than the first means that length
/// was misread, and ends the connection).
pub async fn receive(c: &mut CollectorConn<'_>) -> ConnectionEnd {
    let encoding = c.encoding;
    let mut record_len: Option<usize> = None;
    let mut device_id: Option<u32> = None;
    let request = hyper::Request::get("/stream")
        .header("Host", c.device.to_string())
        .body(Empty::new())
        .expect("valid request");
    receive_stream(c, request, |buf| {
        if record_len.is_none() {
            record_len = http::binary_record_len(buf, false);
        }
        http::split_readings(buf, encoding, record_len.unwrap_or(usize::MAX))
            .into_iter()
            .map(|payload| {
                let reading = encoding.decode(&payload).map_err(|e| e.to_string())?;
                if *device_id.get_or_insert(reading.device_id) != reading.device_id {
                    return Err(format!(
                        "a reading of device {} in the stream of device {}",
                        reading.device_id,
                        device_id.unwrap_or_default()
                    ));
                }
                Ok((reading, payload.len()))
            })
            .collect()
    })
    .await
}
