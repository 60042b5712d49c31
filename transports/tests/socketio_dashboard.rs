//! The Socket.IO sink's dashboard: a browser's Socket.IO client connects to the `/dashboard`
//! namespace of the sink's own server (over a WebSocket from the start, as the page's client is
//! told) and gets every reading the sink receives as a `reading` event carrying the reading's
//! JSON as it came; the sink's figures for its devices never see that connection.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use transports::sink::Dashboard;
use transports::transport::{ConnectionEnd, SinkOptions};
use transports::{Encoding, Link, SinkTransport};

mod support;

use support::{link_options, payload, reading, start_sink, HANG};

const KIND: SinkTransport = SinkTransport::SocketIo;

type Browser =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame, answering the server's pings (`2`) as the client does.
async fn next_text(browser: &mut Browser) -> String {
    loop {
        let message = tokio::time::timeout(HANG, browser.next())
            .await
            .expect("a frame (hang guard)")
            .expect("the connection stays open")
            .unwrap();
        match message {
            Message::Text(text) if text.as_str() == "2" => {
                browser.send(Message::text("3")).await.unwrap();
            }
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("the server sends text frames, not {other:?}"),
        }
    }
}

/// A Socket.IO client as the page's (`transports: ["websocket"]`): the WebSocket upgrade on
/// Socket.IO's path with no polling first, the Engine.IO open, then the connect to `namespace`;
/// returns the server's answer to it.
async fn connect(sink: std::net::SocketAddr, namespace: &str) -> (Browser, String) {
    let url = format!("ws://{sink}/socket.io/?EIO=4&transport=websocket");
    let (mut browser, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let open = next_text(&mut browser).await;
    assert!(open.starts_with("0{\"sid\":"), "{open}");
    browser
        .send(Message::text(format!("40{namespace},")))
        .await
        .unwrap();
    let answer = next_text(&mut browser).await;
    (browser, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_gets_every_reading_as_an_event_and_is_no_device_connection() {
    let dashboard = Dashboard::new();
    let sink = start_sink(
        KIND,
        SinkOptions {
            dashboard: Some(dashboard.clone()),
            ..SinkOptions::default()
        },
    )
    .await;
    let (mut browser, connected) = connect(sink.addr, Dashboard::PATH).await;
    assert!(
        connected.starts_with("40/dashboard,{\"sid\":"),
        "{connected}"
    );
    // Subscribed before the connect was written: nothing published from now on is missed.
    assert_eq!(dashboard.tally().connections, 1);

    let (mut link, _) = Link::connect(
        KIND.dialed(),
        sink.addr,
        &link_options(KIND, Encoding::Json),
    )
    .await
    .unwrap();
    for seq in 0..20 {
        link.send(&reading(7, seq)).await.unwrap();
    }
    link.close().await;
    // Each reading as a `reading` event on the namespace, its JSON as the device wrote it (an
    // object, not a string), in the order the sink received them.
    for seq in 0..20 {
        let json = String::from_utf8(payload(Encoding::Json, &reading(7, seq))).unwrap();
        assert_eq!(
            next_text(&mut browser).await,
            format!("42/dashboard,[\"reading\",{json}]")
        );
    }

    // The browser closes and waits for the server to close its side: the server has dropped
    // the connection, and the connection's task ends now, before the sink stops.
    browser.close(None).await.unwrap();
    let ended = tokio::time::timeout(HANG, async {
        while let Some(Ok(_)) = browser.next().await {}
    });
    ended.await.expect("the server closes (hang guard)");
    sink.wait_for_closed(1).await;
    let collected = sink.stop().await;
    let closed = collected.closed.lock().unwrap();
    assert_eq!(closed.len(), 1, "the device's connection only: {closed:?}");
    assert_eq!(closed[0].readings, 20, "{closed:?}");
    assert_eq!(closed[0].end, ConnectionEnd::PeerClosed);
    assert_eq!(collected.readings().len(), 20, "readings are the device's");
    let tally = dashboard.tally();
    assert_eq!(
        (tally.connections, tally.forwarded, tally.dropped),
        (1, 20, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dashboard_the_namespace_is_refused() {
    let sink = start_sink(KIND, SinkOptions::default()).await;
    let (browser, answer) = connect(sink.addr, Dashboard::PATH).await;
    assert!(
        answer.starts_with("44/dashboard,"),
        "a connect error: {answer}"
    );
    drop(browser);
    // Not a browser's (it never joined the namespace): reported as any connection is.
    sink.wait_for_closed(1).await;
    let collected = sink.stop().await;
    assert_eq!(collected.closed.lock().unwrap().len(), 1);
}
