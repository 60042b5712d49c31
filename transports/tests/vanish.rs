//! A device that loses power vanishes: its connections end without a FIN or an RST, so the peer
//! learns nothing until it writes, and is then reset. An ordinary close, by contrast, reaches
//! the peer as an end of stream. Identities only: the peer's "no end of stream" is read over a
//! short window, in which a FIN, if one were sent, would have arrived on loopback many times
//! over; a loaded machine can only make that check pass, never fail.

mod support;

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use transports::served::{serve_device_until, Outbox, ServedConnection, ServerStop};
use transports::{DialedTransport, Encoding, Link, ServedTransport, SinkTransport, TransportKind};

/// How long the peer listens for an end of stream that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// A hang guard only.
const GUARD: Duration = Duration::from_secs(10);

/// What the peer of a vanished connection sees: nothing (no EOF, no data) until it writes, then
/// a reset.
async fn assert_vanished(peer: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(QUIET, peer.read(&mut buf)).await {
        Err(_) => {}
        Ok(got) => panic!("the peer of a vanished connection read {got:?}"),
    }
    // The first write is taken by the peer's kernel; the answer to it is a reset.
    let reset = tokio::time::timeout(GUARD, async {
        if let Err(e) = peer.write_all(b"are you there?").await {
            return e;
        }
        match peer.read(&mut buf).await {
            Err(e) => e,
            Ok(0) => panic!("end of stream from a vanished connection"),
            Ok(_) => panic!("data from a vanished connection"),
        }
    })
    .await
    .expect("the peer is reset within the guard");
    assert_eq!(reset.kind(), ErrorKind::ConnectionReset, "{reset}");
}

/// Reads until the end of stream; panics on anything else.
async fn assert_end_of_stream(peer: &mut TcpStream) {
    let mut buf = [0u8; 256];
    let end = tokio::time::timeout(GUARD, async {
        loop {
            match peer.read(&mut buf).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => panic!("the peer of a closed connection got {e}"),
            }
        }
    });
    end.await.expect("the end of stream comes within the guard");
}

#[tokio::test]
async fn a_raw_tcp_link_that_vanishes_sends_no_fin_while_a_closed_one_does() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let options = support::link_options(SinkTransport::Tcp, Encoding::Json);

    // Closed: the peer reads the end of stream (and closes its side, which the close awaits).
    let (link, _) = Link::connect(DialedTransport::Tcp, target, &options)
        .await
        .unwrap();
    let (mut peer, _) = listener.accept().await.unwrap();
    let close = tokio::spawn(link.close());
    assert_end_of_stream(&mut peer).await;
    drop(peer);
    close.await.unwrap();

    // Vanished: nothing until the peer writes, then a reset.
    let (mut link, _) = Link::connect(DialedTransport::Tcp, target, &options)
        .await
        .unwrap();
    let (mut peer, _) = listener.accept().await.unwrap();
    link.send(&support::reading(0, 1)).await.unwrap();
    let mut line = vec![0u8; 256];
    let n = peer.read(&mut line).await.unwrap();
    assert!(line[..n].ends_with(b"\n"), "the reading came before");
    link.vanish().expect("root may set TCP_REPAIR");
    assert_vanished(&mut peer).await;
}

/// A broker that accepts one MQTT session: reads the CONNECT, answers CONNACK.
async fn accept_session(listener: &TcpListener) -> TcpStream {
    let (mut peer, _) = listener.accept().await.unwrap();
    let mut connect = [0u8; 256];
    let n = peer.read(&mut connect).await.unwrap();
    assert_eq!(connect[0] >> 4, 1, "CONNECT first: {:?}", &connect[..n]);
    peer.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
    peer
}

#[tokio::test]
async fn an_mqtt_session_that_vanishes_sends_no_disconnect_and_no_fin() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    // The options of a device the sink tests use; MQTT reads only its own settings from them.
    let options = support::link_options(SinkTransport::Tcp, Encoding::Json);

    let accept = accept_session(&listener);
    let (connected, mut peer) = tokio::join!(
        Link::connect(DialedTransport::MqttQos0, target, &options),
        accept
    );
    let (link, _) = connected.unwrap();
    link.vanish().expect("root may set TCP_REPAIR");
    assert_vanished(&mut peer).await;

    // Closed as the libraries' disconnect(): DISCONNECT (0xe0 0x00), then the end of stream.
    let accept = accept_session(&listener);
    let (connected, mut peer) = tokio::join!(
        Link::connect(DialedTransport::MqttQos0, target, &options),
        accept
    );
    let (link, _) = connected.unwrap();
    let close = tokio::spawn(link.close());
    let mut got = Vec::new();
    tokio::time::timeout(GUARD, peer.read_to_end(&mut got))
        .await
        .expect("the end of stream comes within the guard")
        .unwrap();
    assert_eq!(got, [0xe0, 0x00]);
    drop(peer);
    close.await.unwrap();
}

#[tokio::test]
async fn a_device_server_that_vanishes_closes_its_listener_and_sends_no_fin() {
    let options = support::device_options(TransportKind::HttpStream, Encoding::Json);
    let listener =
        transports::socket::listen("127.0.0.1:0".parse().unwrap(), &options.socket, 16).unwrap();
    let addr = listener.local_addr().unwrap();
    let reports = Arc::new(Mutex::new(Vec::<ServedConnection>::new()));
    let kept = reports.clone();
    let stop = ServerStop::default();
    let server = tokio::spawn(serve_device_until(
        ServedTransport::HttpStream,
        listener,
        Outbox::new(8, 0),
        options,
        Arc::new(move |c| kept.lock().unwrap().push(c)),
        stop.clone(),
    ));

    // A collector asks for the stream and reads the response head.
    let mut collector = TcpStream::connect(addr).await.unwrap();
    collector
        .write_all(b"GET /stream HTTP/1.1\r\nHost: device\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(GUARD, collector.read(&mut buf))
            .await
            .expect("the head within the guard")
            .unwrap();
        assert!(n > 0, "the device closed before its head");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");

    stop.vanish.cancel();
    tokio::time::timeout(GUARD, server)
        .await
        .expect("the server ends within the guard")
        .unwrap();
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0].end, "vanished");
    assert!(reports[0].accepted_ns > 0 && reports[0].ended_ns >= reports[0].accepted_ns);
    assert!(
        reports[0].final_stats.counters.is_some(),
        "counts at the instant it vanished"
    );
    assert_vanished(&mut collector).await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::ConnectionRefused,
        "nobody listens"
    );
}
