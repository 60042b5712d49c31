//! What `SocketCounters` reads from TCP_INFO on real loopback sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use transports::socket::{Side, SocketCounters};

/// Written bytes the peer's full window holds back are unsent until the peer reads; then they
/// go out and none are left.
#[test]
fn bytes_held_back_by_a_full_window_are_counted_unsent_until_they_go_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut reader, _) = listener.accept().unwrap();
    writer.set_nonblocking(true).unwrap();
    // Fill the peer's receive buffer and our send buffer: the rest of what was written cannot
    // be sent yet.
    let chunk = [0x5a_u8; 64 * 1024];
    let mut written = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match writer.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
        assert!(Instant::now() < deadline, "the send buffer never filled");
    }
    let held = SocketCounters::of(&writer, Side::Dialed).unwrap();
    assert!(held.unsent_bytes > 0, "{held:?}");
    // `bytes_sent` counts retransmitted bytes again (a loaded machine can time one out even
    // on loopback); each written byte is either sent once or still unsent.
    assert!(
        held.bytes_sent - held.bytes_retransmitted + held.unsent_bytes <= written as u64,
        "{held:?}"
    );

    // The peer reads everything: all of it is sent.
    reader
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0usize;
    while read < written {
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0, "the writer closed early");
        read += n;
    }
    let sent = SocketCounters::of(&writer, Side::Dialed).unwrap();
    assert_eq!(sent.unsent_bytes, 0, "{sent:?}");
    assert_eq!(sent.bytes_sent - sent.bytes_retransmitted, written as u64);
}
