//! SKELETON
use crate::served::{CollectorConn, DeviceConn, ServedConnection};
use crate::transport::{ConnectionEnd, LinkStats};

/// Serves one collector connection.
pub async fn serve(conn: DeviceConn) -> ServedConnection {
    ServedConnection {
        peer: conn.peer,
        setup: None,
        final_stats: LinkStats::default(),
        readings_sent: 0,
        payload_bytes: 0,
        end: "not built".into(),
    }
}

/// Receives from one device connection.
pub async fn receive(_c: &mut CollectorConn<'_>) -> ConnectionEnd {
    ConnectionEnd::Io("not built".into())
}
