//! HTTP streaming served by the device, as an ESP8266WebServer sketch does with
//! `setContentLength(CONTENT_LENGTH_UNKNOWN)` and `sendContent` per reading: `GET /stream`
//! answered with an endless chunked response, one chunk per reading (framing: the hex length
//! and two CRLFs). Nothing is replayed: readings due while no collector is connected are lost.

use http_body_util::Empty;

use super::{
    http, read_request, receive_stream, stream_readings, CollectorConn, DeviceConn,
    ServedConnection,
};
use crate::transport::ConnectionEnd;

/// Serves one collector: the endless chunked response.
pub async fn serve(mut conn: DeviceConn) -> ServedConnection {
    let mut buf = Vec::new();
    let mut served = ServedConnection {
        peer: conn.peer,
        setup: None,
        final_stats: Default::default(),
        closed_stats: None,
        readings_sent: 0,
        payload_bytes: 0,
        end: String::new(),
    };
    served.end = match read_request(&mut conn, &mut buf).await {
        Err(e) => e,
        Ok(req) if req.method != "GET" => {
            let _ = conn.write(&http::error_response(405)).await;
            format!("method {} refused", req.method)
        }
        Ok(req) if req.path() != "/stream" => {
            let _ = conn.write(&http::error_response(404)).await;
            format!("path {} refused", req.path())
        }
        Ok(_) => {
            let encoding = conn.options.encoding;
            let subscription = conn.outbox.subscribe(None);
            match conn
                .write(&http::stream_head(http::content_type(encoding)))
                .await
            {
                Err(e) => e.to_string(),
                Ok(()) => {
                    served.setup = Some(conn.ready());
                    let mut payload = Vec::with_capacity(128);
                    let (readings, bytes, end) =
                        stream_readings(&mut conn, subscription, |reading, out| {
                            payload.clear();
                            encoding.encode(reading, &mut payload);
                            http::chunk(&payload, out);
                            payload.len()
                        })
                        .await;
                    served.readings_sent = readings;
                    served.payload_bytes = bytes;
                    end
                }
            }
        }
    };
    served.final_stats = conn.stats();
    served
}

/// Receives one device's chunked stream; each reading is stamped when its last byte is read.
/// hyper hands over a chunk's data as it reads it, possibly in pieces: readings are delimited by
/// their own syntax (flat JSON objects, fixed-size records).
pub async fn receive(c: &mut CollectorConn<'_>) -> ConnectionEnd {
    let encoding = c.encoding;
    let request = hyper::Request::get("/stream")
        .header("Host", c.device.to_string())
        .body(Empty::new())
        .expect("valid request");
    receive_stream(c, request, |buf| {
        http::split_readings(buf, encoding)
            .into_iter()
            .map(|payload| {
                encoding
                    .decode(&payload)
                    .map(|reading| (reading, payload.len()))
                    .map_err(|e| e.to_string())
            })
            .collect()
    })
    .await
}
