//! The WebSocket sink's dashboard: a browser subscribes on `/dashboard` of the sink's own port
//! and gets every reading the sink receives, as JSON, as it arrives; the sink's figures for its
//! devices never see that connection.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use transports::sink::Dashboard;
use transports::transport::{ConnectionEnd, SinkOptions};
use transports::{Encoding, Link, Reading, SinkTransport};

mod support;

use support::{link_options, reading, start_sink, until};

/// Reads `n` text frames from a dashboard connection and decodes each as a JSON reading.
async fn dashboard_readings<S>(dashboard: &mut S, n: usize) -> Vec<Reading>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut readings = Vec::with_capacity(n);
    while readings.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(10), dashboard.next())
            .await
            .expect("a reading within 10 s")
            .expect("the dashboard stays open")
            .unwrap();
        match message {
            Message::Text(text) => readings.push(Encoding::Json.decode(text.as_bytes()).unwrap()),
            other => panic!("a dashboard gets text frames only, not {other:?}"),
        }
    }
    readings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_gets_every_reading_as_json_and_is_no_device_connection() {
    let dashboard = Dashboard::new();
    let sink = start_sink(
        SinkTransport::Ws,
        SinkOptions {
            dashboard: Some(dashboard.clone()),
            ..SinkOptions::default()
        },
    )
    .await;
    let url = format!("ws://{}{}", sink.addr, Dashboard::PATH);
    let (mut browser, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    until("the dashboard to subscribe", || {
        dashboard.tally().connections == 1
    })
    .await;

    // One device sends JSON, one binary: the dashboard gets JSON from both, in each device's
    // order.
    let mut sent = Vec::new();
    for (device, encoding) in [(1, Encoding::Json), (2, Encoding::Binary)] {
        let options = link_options(SinkTransport::Ws, encoding);
        let (mut link, _) = Link::connect(SinkTransport::Ws.dialed(), sink.addr, &options)
            .await
            .unwrap();
        for seq in 0..20 {
            link.send(&reading(device, seq)).await.unwrap();
            sent.push(reading(device, seq));
        }
        link.close().await;
    }
    let got = dashboard_readings(&mut browser, sent.len()).await;
    assert_eq!(
        got, sent,
        "every reading once, in the order the sink received them"
    );

    drop(browser);
    sink.wait_for_closed(2).await;
    let collected = sink.stop().await;
    let closed = collected.closed.lock().unwrap();
    assert_eq!(
        closed.len(),
        2,
        "the two devices' connections only: {closed:?}"
    );
    assert!(closed.iter().all(|c| c.readings == 20), "{closed:?}");
    assert!(closed.iter().all(|c| c.end == ConnectionEnd::PeerClosed));
    assert_eq!(collected.readings().len(), 40, "readings are the devices'");
    let tally = dashboard.tally();
    assert_eq!(
        (tally.connections, tally.forwarded, tally.dropped),
        (1, 40, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dashboard_the_path_is_a_device_connection_as_before() {
    let sink = start_sink(SinkTransport::Ws, SinkOptions::default()).await;
    let url = format!("ws://{}{}", sink.addr, Dashboard::PATH);
    let (browser, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    drop(browser);
    sink.wait_for_closed(1).await;
    let collected = sink.stop().await;
    assert_eq!(collected.closed.lock().unwrap().len(), 1);
}
