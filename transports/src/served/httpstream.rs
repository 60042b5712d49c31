//! HTTP streaming served by the device, as an ESP8266WebServer sketch does with
//! `setContentLength(CONTENT_LENGTH_UNKNOWN)` and `sendContent` per reading: `GET /stream`
//! answered with an endless chunked response, one chunk per reading (framing: the hex length
//! and two CRLFs). Nothing is replayed: readings due while no collector is connected are lost.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::os::fd::AsRawFd;

use super::{
    http, link_stats, read_request, stream_readings, CollectorConn, DeviceConn, ServedConnection,
};
use crate::transport::ConnectionEnd;

/// Serves one collector: the endless chunked response.
pub async fn serve(mut conn: DeviceConn) -> ServedConnection {
    let mut buf = Vec::new();
    let mut served = ServedConnection {
        peer: conn.peer,
        setup: None,
        final_stats: Default::default(),
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
pub async fn receive(c: &mut CollectorConn<'_>) -> ConnectionEnd {
    let (observer, conn, device, encoding) = (c.observer, c.conn, c.device, c.encoding);
    let counts = c.stream.counts();
    let fd = c.stream.get_ref().as_raw_fd();
    let shutdown = c.shutdown.clone();
    let last_seq: &mut Option<u32> = &mut *c.last_seq;
    let (mut readings, mut payload_bytes, mut ready) = (0u64, 0u64, None);
    let io = TokioIo::new(&mut c.stream);
    let end = async {
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await {
                Ok(pair) => pair,
                Err(e) => return ConnectionEnd::Io(e.to_string()),
            };
        let mut connection = std::pin::pin!(connection);
        let request = hyper::Request::get("/stream")
            .header("Host", device.to_string())
            .body(Empty::new())
            .expect("valid request");
        let response = tokio::select! {
            r = sender.send_request(request) => match r {
                Ok(r) => r,
                Err(e) => return ConnectionEnd::Io(e.to_string()),
            },
            c = &mut connection => return ConnectionEnd::Io(format!("connection ended: {c:?}")),
            _ = shutdown.cancelled() => return ConnectionEnd::Shutdown,
        };
        if response.status() != 200 {
            return ConnectionEnd::Malformed(format!("status {}", response.status()));
        }
        ready = Some(link_stats(&counts, fd));
        let mut body = response.into_body();
        let mut buf = Vec::new();
        loop {
            let frame = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return ConnectionEnd::Shutdown,
                f = body.frame() => f,
                c = &mut connection => return match c {
                    Ok(()) => ConnectionEnd::PeerClosed,
                    Err(e) => ConnectionEnd::Io(e.to_string()),
                },
            };
            let data = match frame {
                None => return ConnectionEnd::PeerClosed,
                Some(Err(e)) => return ConnectionEnd::Malformed(e.to_string()),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            let arrived_ns = counts.last_read_ns();
            // hyper hands over a chunk's data as it reads it, possibly in pieces: readings are
            // delimited by their own syntax (flat JSON objects, fixed-size records).
            buf.extend_from_slice(&data);
            for payload in http::split_readings(&mut buf, encoding) {
                match encoding.decode(&payload) {
                    Ok(reading) => {
                        readings += 1;
                        payload_bytes += payload.len() as u64;
                        *last_seq = Some(last_seq.map_or(reading.seq, |s| s.max(reading.seq)));
                        observer.reading(conn, &reading, arrived_ns);
                    }
                    Err(e) => return ConnectionEnd::Malformed(e.to_string()),
                }
            }
        }
    }
    .await;
    c.readings += readings;
    c.payload_bytes += payload_bytes;
    c.ready = ready;
    end
}
