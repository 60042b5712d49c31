//! MQTT session state without I/O: what each incoming packet and each expired timer means, and
//! what to send back. [`super::driver`] does the reading, writing and waiting; everything here is
//! plain values, unit-tested without sockets or clocks.
//!
//! - [`KeepAlive`]: when to send PINGREQ and when to give a silent connection up.
//! - [`DevicePublishes`]: a device's packet ids, its one publish in flight (QoS 1 and 2) and
//!   the subscription to its command topic waiting for SUBACK.
//! - [`command_qos`]: the QoS a device subscribes to its commands at, within its library's reach.
//! - [`SubscriberSession`]: the QoS 2 ids awaiting PUBREL of whatever receives PUBLISHes (a
//!   collector's subscriber across its connections, the commander, a device for one connection).
//! - [`CommanderPublishes`]: the commander's packet ids and its publishes in flight, and what
//!   to send again after a reconnect.
//! - [`Backoff`]: the delays between a backend session's reconnect attempts.

use std::collections::HashSet;
use std::time::Duration;

use rumqttc::{
    Packet, PubAck, PubComp, PubRec, PubRel, Publish, QoS, SubAck, Subscribe, SubscribeReasonCode,
};
use tokio::time::Instant;

/// The QoS of a variant's level (0, 1; 2 and above are QoS 2).
pub fn qos_of(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The QoS a device of a variant at `variant_level` subscribes to its command topic at when
/// `requested`: PubSubClient (the QoS 0 variant) subscribes at QoS 0 or 1 only, arduino-mqtt
/// (QoS 1 and 2) at 0, 1 or 2.
pub fn command_qos(variant_level: u8, requested: u8) -> QoS {
    let most = if variant_level == 0 { 1 } else { 2 };
    qos_of(requested.min(most))
}

/// Which silence makes a client ping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingRule {
    /// Devices (PubSubClient): PINGREQ when nothing has arrived for a keep-alive; the connection
    /// is given up when nothing arrives for a second keep-alive.
    NothingReceived,
    /// The collector: PINGREQ when it has sent nothing for a keep-alive; the connection is given
    /// up when a keep-alive passes after that PINGREQ with nothing received.
    NothingSent,
}

/// What to do when the keep-alive [deadline](KeepAlive::deadline) passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Send PINGREQ, then call [`KeepAlive::pinged`].
    Ping,
    /// A PINGREQ went unanswered: give the connection up.
    GiveUp,
}

/// A client's keep-alive timing: the instants that matter and the next deadline.
#[derive(Clone, Debug)]
pub struct KeepAlive {
    rule: PingRule,
    interval: Duration,
    last_received: Instant,
    last_sent: Instant,
    /// When a PINGREQ went out with nothing received since.
    ping_sent: Option<Instant>,
}

impl KeepAlive {
    /// Keep-alive by `rule` every `interval`, counting from `now` for both directions.
    pub fn new(rule: PingRule, interval: Duration, now: Instant) -> KeepAlive {
        KeepAlive {
            rule,
            interval,
            last_received: now,
            last_sent: now,
            ping_sent: None,
        }
    }

    /// When the next [`KeepAliveAction`] is due, unless something is sent or received first.
    pub fn deadline(&self) -> Instant {
        match (self.rule, self.ping_sent) {
            (PingRule::NothingReceived, None) => self.last_received + self.interval,
            (PingRule::NothingReceived, Some(_)) => self.last_received + self.interval * 2,
            (PingRule::NothingSent, None) => self.last_sent + self.interval,
            (PingRule::NothingSent, Some(sent)) => sent + self.interval,
        }
    }

    /// What the passed deadline calls for.
    pub fn expired(&self) -> KeepAliveAction {
        if self.ping_sent.is_some() {
            KeepAliveAction::GiveUp
        } else {
            KeepAliveAction::Ping
        }
    }

    /// A packet arrived at `now` (any packet answers a ping).
    pub fn received(&mut self, now: Instant) {
        self.last_received = now;
        self.ping_sent = None;
    }

    /// A write completed at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// The PINGREQ asked for by [`KeepAliveAction::Ping`] was written at `now`.
    pub fn pinged(&mut self, now: Instant) {
        self.last_sent = now;
        self.ping_sent = Some(now);
    }
}

/// Where a device's publish in flight stands: the packet it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after the packets
enum Awaiting {
    PubAck,
    PubRec,
    PubComp,
}

/// What an incoming packet did to a device's publish in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckStep {
    /// Not an acknowledgement of the publish in flight (a late one, a PINGRESP): nothing.
    Ignored,
    /// PUBACK: the broker accepted the reading; the QoS 1 publish is complete.
    Acknowledged,
    /// PUBREC: the broker accepted the reading; send this PUBREL and wait for PUBCOMP.
    Received(Packet),
    /// PUBCOMP: the QoS 2 exchange is complete.
    Completed,
}

/// What a SUBACK says of the subscription a device asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubAckStep {
    /// Not the SUBACK of the subscription asked for (none asked, or another id).
    NotOurs,
    /// The broker granted the subscription at this QoS.
    Granted(QoS),
    /// The broker refused it (return code 0x80).
    Refused,
}

/// A device's publishing state as arduino-mqtt (QoS 1, 2) and PubSubClient (QoS 0) keep it:
/// packet ids counting 1, 2, … 65535, 1 (0 at a QoS 0 publish), and at most one publish in
/// flight, whose acknowledgements are waited for before the next. A SUBSCRIBE takes its id from
/// the same counter, as both libraries do (`nextMsgId`, `lwmqtt_get_next_packet_id`): a device
/// that subscribes to its commands on connecting publishes its first reading with id 2.
#[derive(Debug)]
pub struct DevicePublishes {
    qos: QoS,
    last_pkid: u16,
    in_flight: Option<(u16, Awaiting)>,
    /// The id of the SUBSCRIBE waiting for its SUBACK.
    subscribing: Option<u16>,
}

impl DevicePublishes {
    /// No publish yet, at `qos`.
    pub fn new(qos: QoS) -> DevicePublishes {
        DevicePublishes {
            qos,
            last_pkid: 0,
            in_flight: None,
            subscribing: None,
        }
    }

    fn next_pkid(&mut self) -> u16 {
        self.last_pkid = self.last_pkid % u16::MAX + 1;
        self.last_pkid
    }

    /// The SUBSCRIBE of `filter` at `qos`, with the next packet id; it waits for its SUBACK
    /// from now on.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Subscribe {
        let mut subscribe = Subscribe::new(filter, qos);
        subscribe.pkid = self.next_pkid();
        self.subscribing = Some(subscribe.pkid);
        subscribe
    }

    /// A SUBACK arrived.
    pub fn suback(&mut self, ack: &SubAck) -> SubAckStep {
        if self.subscribing != Some(ack.pkid) {
            return SubAckStep::NotOurs;
        }
        self.subscribing = None;
        match ack.return_codes.first() {
            Some(SubscribeReasonCode::Success(qos)) => SubAckStep::Granted(*qos),
            _ => SubAckStep::Refused,
        }
    }

    /// The next PUBLISH of `payload` to `topic`; at QoS 1 and 2 it is in flight from now on.
    pub fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> Publish {
        let mut publish = Publish::new(topic, self.qos, payload);
        publish.retain = retain;
        let awaiting = match self.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Awaiting::PubAck),
            QoS::ExactlyOnce => Some(Awaiting::PubRec),
        };
        if let Some(awaiting) = awaiting {
            publish.pkid = self.next_pkid();
            self.in_flight = Some((publish.pkid, awaiting));
        }
        publish
    }

    /// Whether a publish waits for acknowledgements.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The publish in flight is given up (its send failed or timed out): a late acknowledgement
    /// of it is ignored, and no PUBREL is sent for it.
    pub fn abandon(&mut self) {
        self.in_flight = None;
    }

    /// An incoming packet.
    pub fn incoming(&mut self, packet: &Packet) -> AckStep {
        let Some((pkid, awaiting)) = self.in_flight else {
            return AckStep::Ignored;
        };
        match (awaiting, packet) {
            (Awaiting::PubAck, Packet::PubAck(ack)) if ack.pkid == pkid => {
                self.in_flight = None;
                AckStep::Acknowledged
            }
            (Awaiting::PubRec, Packet::PubRec(rec)) if rec.pkid == pkid => {
                self.in_flight = Some((pkid, Awaiting::PubComp));
                AckStep::Received(Packet::PubRel(PubRel::new(pkid)))
            }
            (Awaiting::PubComp, Packet::PubComp(comp)) if comp.pkid == pkid => {
                self.in_flight = None;
                AckStep::Completed
            }
            _ => AckStep::Ignored,
        }
    }
}

/// The receiving side of an MQTT session: the QoS 2 packet ids it acknowledged with PUBREC and
/// the broker has not yet released. A collector's subscriber and the commander keep it across
/// their connections (clean session off); a device keeps it for one connection (its state, as
/// the libraries', does not outlive the connection).
#[derive(Debug, Default)]
pub struct SubscriberSession {
    unreleased: HashSet<u16>,
}

impl SubscriberSession {
    /// A connection was accepted; `session_present` is the CONNACK's flag. A broker that kept
    /// no session (a first connect, or a broker restarted) will not release the old ids.
    pub fn connected(&mut self, session_present: bool) {
        if !session_present {
            self.unreleased.clear();
        }
    }

    /// An incoming PUBLISH: whether it is a reading to record, and the reply its QoS needs.
    /// At QoS 2 a PUBLISH whose id is still unreleased was recorded already (MQTT 3.1.1
    /// §4.3.3, method B); at QoS 1 a redelivery is recorded again, and the measurement counts it
    /// as a duplicate, as the broker did deliver it twice.
    pub fn publish(&mut self, qos: QoS, pkid: u16) -> (bool, Option<Packet>) {
        match qos {
            QoS::AtMostOnce => (true, None),
            QoS::AtLeastOnce => (true, Some(Packet::PubAck(PubAck::new(pkid)))),
            QoS::ExactlyOnce => (
                self.unreleased.insert(pkid),
                Some(Packet::PubRec(PubRec::new(pkid))),
            ),
        }
    }

    /// An incoming PUBREL: the id is released; the reply is PUBCOMP (also for an id already
    /// released, as a resent PUBREL after a reconnect needs).
    pub fn pubrel(&mut self, pkid: u16) -> Packet {
        self.unreleased.remove(&pkid);
        Packet::PubComp(PubComp::new(pkid))
    }
}

/// Most publishes the commander keeps in flight (QoS 1 and 2) before it waits for an
/// acknowledgement: rumqttc's default `inflight`, a backend client's usual bound.
pub const COMMANDER_INFLIGHT: usize = 100;

/// One of the commander's publishes in flight.
#[derive(Clone, Debug)]
struct Outgoing {
    pkid: u16,
    /// The PUBLISH, kept to send again until the broker took it over (PUBACK, PUBREC).
    publish: Publish,
    awaiting: Awaiting,
}

/// The commander's publishing state: packet ids counting 1, 2, … 65535, 1 and skipping the ids
/// in flight; up to [`COMMANDER_INFLIGHT`] publishes in flight at QoS 1 and 2, in the order they
/// were sent; and what a reconnect must send again (MQTT 3.1.1 §4.4).
#[derive(Debug)]
pub struct CommanderPublishes {
    qos: QoS,
    last_pkid: u16,
    in_flight: Vec<Outgoing>,
}

impl CommanderPublishes {
    /// Nothing in flight, publishing at `qos`.
    pub fn new(qos: QoS) -> CommanderPublishes {
        CommanderPublishes {
            qos,
            last_pkid: 0,
            in_flight: Vec::new(),
        }
    }

    /// Whether another publish may go out now (fewer than [`COMMANDER_INFLIGHT`] in flight).
    pub fn has_room(&self) -> bool {
        self.in_flight.len() < COMMANDER_INFLIGHT
    }

    /// The PUBLISH of `payload` to `topic`; at QoS 1 and 2 it is in flight from now on. Call
    /// only when [`has_room`](Self::has_room).
    pub fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Publish {
        let mut publish = Publish::new(topic, self.qos, payload);
        let awaiting = match self.qos {
            QoS::AtMostOnce => return publish,
            QoS::AtLeastOnce => Awaiting::PubAck,
            QoS::ExactlyOnce => Awaiting::PubRec,
        };
        loop {
            self.last_pkid = self.last_pkid % u16::MAX + 1;
            let pkid = self.last_pkid;
            if !self.in_flight.iter().any(|o| o.pkid == pkid) {
                publish.pkid = pkid;
                break;
            }
        }
        self.in_flight.push(Outgoing {
            pkid: publish.pkid,
            publish: publish.clone(),
            awaiting,
        });
        publish
    }

    /// An incoming acknowledgement: the reply it needs (PUBREL for a PUBREC). Acknowledgements
    /// of nothing in flight are ignored (a PUBREC answered again with PUBREL is the broker's
    /// to complete, MQTT 3.1.1 §4.3.3).
    pub fn incoming(&mut self, packet: &Packet) -> Option<Packet> {
        let (pkid, expects) = match packet {
            Packet::PubAck(ack) => (ack.pkid, Awaiting::PubAck),
            Packet::PubRec(rec) => (rec.pkid, Awaiting::PubRec),
            Packet::PubComp(comp) => (comp.pkid, Awaiting::PubComp),
            _ => return None,
        };
        let at = self
            .in_flight
            .iter()
            .position(|o| o.pkid == pkid && o.awaiting == expects)?;
        match expects {
            Awaiting::PubRec => {
                self.in_flight[at].awaiting = Awaiting::PubComp;
                Some(Packet::PubRel(PubRel::new(pkid)))
            }
            Awaiting::PubAck | Awaiting::PubComp => {
                self.in_flight.remove(at);
                None
            }
        }
    }

    /// The connection was replaced; `session_present` is the new CONNACK's flag. Returns what
    /// to send again, in order: each PUBLISH the broker has not taken over (flagged DUP), and,
    /// when the broker kept the session, PUBREL for each it took over and has not completed. A
    /// broker without the session (restarted) lost what it took over: those are forgotten (their
    /// loss is the broker's, as a reading's after PUBREC).
    pub fn reconnected(&mut self, session_present: bool) -> Vec<Packet> {
        if !session_present {
            self.in_flight.retain(|o| o.awaiting != Awaiting::PubComp);
        }
        self.in_flight
            .iter_mut()
            .map(|o| match o.awaiting {
                Awaiting::PubComp => Packet::PubRel(PubRel::new(o.pkid)),
                Awaiting::PubAck | Awaiting::PubRec => {
                    o.publish.dup = true;
                    Packet::Publish(o.publish.clone())
                }
            })
            .collect()
    }
}

/// The first delay before a subscriber reconnects; each failed attempt doubles it.
pub const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest delay between a subscriber's reconnect attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// Delays between a subscriber's reconnect attempts: doubling from [`RETRY_FIRST`] up to
/// [`RETRY_MAX`], and back to the first once a subscription is acknowledged.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: RETRY_FIRST }
    }
}

impl Backoff {
    /// The delay before the next attempt.
    pub fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(RETRY_MAX);
        delay
    }

    /// A subscription was acknowledged: the next drop starts again from the first delay.
    pub fn reset(&mut self) {
        self.next = RETRY_FIRST;
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::PubRel;

    use super::*;

    const KA: Duration = Duration::from_secs(15);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_device_pings_after_a_keepalive_of_silence_and_gives_up_after_another() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(PingRule::NothingReceived, KA, t0);
        // Publishing does not postpone the ping: only what arrives does.
        ka.sent(at(t0, 10));
        assert_eq!(ka.deadline(), at(t0, 15));
        assert_eq!(ka.expired(), KeepAliveAction::Ping);
        ka.pinged(at(t0, 16));
        // Given up a second keep-alive after the last arrival, not after the ping.
        assert_eq!(ka.deadline(), at(t0, 30));
        assert_eq!(ka.expired(), KeepAliveAction::GiveUp);
        ka.received(at(t0, 20));
        assert_eq!(ka.deadline(), at(t0, 35));
        assert_eq!(ka.expired(), KeepAliveAction::Ping);
    }

    #[test]
    fn the_collector_pings_after_a_keepalive_without_sending_and_waits_one_more() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(PingRule::NothingSent, KA, t0);
        // Readings arriving do not postpone the ping: only what is sent does.
        ka.received(at(t0, 10));
        assert_eq!(ka.deadline(), at(t0, 15));
        ka.sent(at(t0, 12));
        assert_eq!(ka.deadline(), at(t0, 27));
        assert_eq!(ka.expired(), KeepAliveAction::Ping);
        ka.pinged(at(t0, 28));
        assert_eq!(ka.deadline(), at(t0, 43));
        // A reply written meanwhile does not postpone giving up.
        ka.sent(at(t0, 30));
        assert_eq!(ka.deadline(), at(t0, 43));
        assert_eq!(ka.expired(), KeepAliveAction::GiveUp);
        ka.received(at(t0, 31));
        assert_eq!(ka.deadline(), at(t0, 45));
        assert_eq!(ka.expired(), KeepAliveAction::Ping);
    }

    #[test]
    fn qos0_publishes_carry_no_id_and_wait_for_nothing() {
        let mut p = DevicePublishes::new(QoS::AtMostOnce);
        let publish = p.publish("t", b"x".to_vec(), true);
        assert_eq!((publish.pkid, publish.retain), (0, true));
        assert!(!p.in_flight());
        assert_eq!(
            p.incoming(&Packet::PubAck(PubAck::new(0))),
            AckStep::Ignored
        );
    }

    #[test]
    fn qos1_publish_completes_at_its_own_puback() {
        let mut p = DevicePublishes::new(QoS::AtLeastOnce);
        assert_eq!(p.publish("t", vec![], false).pkid, 1);
        assert!(p.in_flight());
        // A late PUBACK of an earlier publish is skipped.
        assert_eq!(
            p.incoming(&Packet::PubAck(PubAck::new(9))),
            AckStep::Ignored
        );
        assert_eq!(p.incoming(&Packet::PingResp), AckStep::Ignored);
        assert_eq!(
            p.incoming(&Packet::PubAck(PubAck::new(1))),
            AckStep::Acknowledged
        );
        assert!(!p.in_flight());
        assert_eq!(p.publish("t", vec![], false).pkid, 2);
    }

    #[test]
    fn qos2_publish_answers_pubrec_with_pubrel_and_completes_at_pubcomp() {
        let mut p = DevicePublishes::new(QoS::ExactlyOnce);
        assert_eq!(p.publish("t", vec![], false).pkid, 1);
        assert_eq!(
            p.incoming(&Packet::PubComp(PubComp::new(1))),
            AckStep::Ignored,
            "PUBCOMP before PUBREC"
        );
        assert_eq!(
            p.incoming(&Packet::PubRec(PubRec::new(1))),
            AckStep::Received(Packet::PubRel(PubRel::new(1)))
        );
        assert!(p.in_flight());
        assert_eq!(
            p.incoming(&Packet::PubRec(PubRec::new(1))),
            AckStep::Ignored,
            "a second PUBREC"
        );
        assert_eq!(
            p.incoming(&Packet::PubComp(PubComp::new(1))),
            AckStep::Completed
        );
        assert!(!p.in_flight());
    }

    #[test]
    fn an_abandoned_publish_ignores_its_late_acks_and_ids_wrap_past_zero() {
        let mut p = DevicePublishes::new(QoS::ExactlyOnce);
        p.publish("t", vec![], false);
        p.abandon();
        assert_eq!(
            p.incoming(&Packet::PubRec(PubRec::new(1))),
            AckStep::Ignored
        );
        p.last_pkid = u16::MAX - 1;
        assert_eq!(p.publish("t", vec![], false).pkid, u16::MAX);
        assert_eq!(p.publish("t", vec![], false).pkid, 1);
    }

    #[test]
    fn a_device_subscribes_with_the_first_id_and_publishes_from_the_next() {
        let mut p = DevicePublishes::new(QoS::AtLeastOnce);
        let subscribe = p.subscribe("fleet/esp-000042/cmd", QoS::AtLeastOnce);
        assert_eq!(subscribe.pkid, 1);
        assert_eq!(subscribe.filters[0].qos, QoS::AtLeastOnce);
        let granted = |pkid, code| SubAck::new(pkid, vec![code]);
        let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
        assert_eq!(p.suback(&granted(9, ok)), SubAckStep::NotOurs);
        assert_eq!(
            p.suback(&granted(1, ok)),
            SubAckStep::Granted(QoS::AtLeastOnce)
        );
        assert_eq!(
            p.suback(&granted(1, ok)),
            SubAckStep::NotOurs,
            "answered once"
        );
        assert_eq!(p.publish("t", vec![], false).pkid, 2);
        // PubSubClient: its QoS 0 publishes carry no id, its SUBSCRIBE still takes one.
        let mut p = DevicePublishes::new(QoS::AtMostOnce);
        assert_eq!(p.subscribe("c", QoS::AtLeastOnce).pkid, 1);
        assert_eq!(
            p.suback(&granted(1, SubscribeReasonCode::Failure)),
            SubAckStep::Refused
        );
        assert_eq!(p.publish("t", vec![], false).pkid, 0);
    }

    #[test]
    fn pubsubclient_subscribes_to_commands_at_qos_1_at_most() {
        assert_eq!(command_qos(0, 0), QoS::AtMostOnce);
        assert_eq!(command_qos(0, 1), QoS::AtLeastOnce);
        assert_eq!(command_qos(0, 2), QoS::AtLeastOnce);
        assert_eq!(command_qos(1, 2), QoS::ExactlyOnce);
        assert_eq!(command_qos(2, 0), QoS::AtMostOnce);
        assert_eq!(command_qos(2, 7), QoS::ExactlyOnce);
    }

    #[test]
    fn commander_qos0_publishes_keep_nothing_in_flight() {
        let mut c = CommanderPublishes::new(QoS::AtMostOnce);
        assert_eq!(c.publish("t", vec![1]).pkid, 0);
        assert_eq!(c.in_flight.len(), 0);
        assert!(c.reconnected(true).is_empty());
    }

    #[test]
    fn commander_qos1_keeps_many_in_flight_and_skips_ids_still_in_use() {
        let mut c = CommanderPublishes::new(QoS::AtLeastOnce);
        let ids: Vec<u16> = (0..3).map(|_| c.publish("t", vec![]).pkid).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(c.incoming(&Packet::PubAck(PubAck::new(2))), None);
        assert_eq!(c.in_flight.len(), 2);
        // A second PUBACK of the same id, or one of nothing sent, changes nothing.
        c.incoming(&Packet::PubAck(PubAck::new(2)));
        c.incoming(&Packet::PubRec(PubRec::new(1)));
        assert_eq!(c.in_flight.len(), 2);
        // Ids wrap past 65535 to 1, skipping 1 and 3, still in flight.
        c.last_pkid = u16::MAX;
        assert_eq!(c.publish("t", vec![]).pkid, 2);
        assert_eq!(c.publish("t", vec![]).pkid, 4);
        while c.has_room() {
            c.publish("t", vec![]);
        }
        assert_eq!(c.in_flight.len(), COMMANDER_INFLIGHT);
    }

    #[test]
    fn commander_qos2_releases_at_pubrec_and_completes_at_pubcomp() {
        let mut c = CommanderPublishes::new(QoS::ExactlyOnce);
        c.publish("t", vec![]);
        assert_eq!(c.incoming(&Packet::PubComp(PubComp::new(1))), None);
        assert_eq!(
            c.incoming(&Packet::PubRec(PubRec::new(1))),
            Some(Packet::PubRel(PubRel::new(1)))
        );
        assert_eq!(c.incoming(&Packet::PubRec(PubRec::new(1))), None, "once");
        assert_eq!(c.in_flight.len(), 1);
        assert_eq!(c.incoming(&Packet::PubComp(PubComp::new(1))), None);
        assert_eq!(c.in_flight.len(), 0);
    }

    #[test]
    fn commander_resends_in_order_after_a_reconnect() {
        let mut c = CommanderPublishes::new(QoS::ExactlyOnce);
        for payload in [b"a", b"b", b"c"] {
            c.publish("t", payload.to_vec());
        }
        // "b" was taken over by the broker (PUBREC): only its PUBREL goes again.
        c.incoming(&Packet::PubRec(PubRec::new(2)));
        let again = c.reconnected(true);
        let describe: Vec<String> = again
            .iter()
            .map(|p| match p {
                Packet::Publish(p) => format!("publish {} dup={}", p.pkid, p.dup),
                Packet::PubRel(r) => format!("pubrel {}", r.pkid),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            describe,
            ["publish 1 dup=true", "pubrel 2", "publish 3 dup=true"]
        );
        // A broker that lost the session lost "b" with it; "a" and "c" go again.
        let again = c.reconnected(false);
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|p| matches!(p, Packet::Publish(_))));
        assert_eq!(c.in_flight.len(), 2);
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets_after_a_subscription() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.delay()).collect();
        assert_eq!(delays[0], RETRY_FIRST);
        assert_eq!(delays[1], RETRY_FIRST * 2);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), RETRY_MAX);
        backoff.reset();
        assert_eq!(backoff.delay(), RETRY_FIRST);
    }

    #[test]
    fn qos2_redelivery_of_an_unreleased_id_is_not_a_new_reading() {
        let mut s = SubscriberSession::default();
        s.connected(false);
        let (fresh, reply) = s.publish(QoS::ExactlyOnce, 7);
        assert!(fresh);
        assert_eq!(reply, Some(Packet::PubRec(PubRec::new(7))));
        // The connection drops before PUBREL; the broker kept the session and resends (DUP).
        s.connected(true);
        assert_eq!(
            s.publish(QoS::ExactlyOnce, 7),
            (false, Some(Packet::PubRec(PubRec::new(7))))
        );
        assert_eq!(s.pubrel(7), Packet::PubComp(PubComp::new(7)));
        // Released: the id may now carry a new message.
        assert!(s.publish(QoS::ExactlyOnce, 7).0);
        // A PUBREL resent after a reconnect is completed again.
        assert_eq!(s.pubrel(7), Packet::PubComp(PubComp::new(7)));
        assert_eq!(s.pubrel(7), Packet::PubComp(PubComp::new(7)));
    }

    #[test]
    fn a_broker_without_the_session_forgets_unreleased_ids() {
        let mut s = SubscriberSession::default();
        assert!(s.publish(QoS::ExactlyOnce, 3).0);
        // The broker restarted: its new session reuses id 3 for a new message.
        s.connected(false);
        assert!(s.publish(QoS::ExactlyOnce, 3).0);
    }

    #[test]
    fn qos1_and_qos0_publishes_are_always_recorded() {
        let mut s = SubscriberSession::default();
        assert_eq!(
            s.publish(QoS::AtLeastOnce, 9),
            (true, Some(Packet::PubAck(PubAck::new(9))))
        );
        // A DUP redelivery is recorded again: the measurement counts it as a duplicate.
        assert!(s.publish(QoS::AtLeastOnce, 9).0);
        assert_eq!(s.publish(QoS::AtMostOnce, 0), (true, None));
    }
}
