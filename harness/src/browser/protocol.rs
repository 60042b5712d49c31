//! What the page and fleetbench say to each other on the page's report WebSocket, as JSON
//! text frames: pure values and their parsing, no I/O.
//!
//! fleetbench → page ([`ToPage`]): a clock probe (`{"probe":7}`, answered at once with the
//! page's clock), the subscriptions to open (`{"subscribe":{"with":"EventSource","urls":[…]}}`)
//! and a last flush at the end (`{"flush":true}`).
//!
//! page → fleetbench ([`FromPage`]): who it is (`hello`), each probe's answer, each
//! subscription opened or closed, every arrival in batches (`{"arrivals":[[i, t, data], …]}`:
//! the subscription, `performance.timeOrigin + performance.now()` in ms taken first thing in
//! the callback, and the event's data as it came) and `flushed`.

use serde::{Deserialize, Serialize};

use super::Subscription;

/// A message to the page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToPage {
    /// A clock probe: answer with this number and the page's clock at once.
    Probe(u64),
    /// Open these subscriptions, each by `with`; subscription `i` is `urls[i]`.
    Subscribe {
        /// How to subscribe.
        with: Subscription,
        /// One subscription each.
        urls: Vec<String>,
    },
    /// Send what is batched now, then say `flushed`.
    Flush(bool),
}

impl ToPage {
    /// The message as the text frame's JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a message to the page serializes")
    }
}

/// One reading (or what the page took for one) as its callback saw it: the subscription, the
/// page's clock in ms and the event's data.
pub type PageEvent = (u32, f64, String);

/// A message from the page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FromPage {
    /// The page is up.
    Hello {
        /// `self.crossOriginIsolated` (its timer is finer when true).
        isolated: bool,
        /// `navigator.userAgent`.
        agent: String,
    },
    /// A probe's answer: its number and the page's clock, ms.
    Probe {
        /// The probe's number.
        k: u64,
        /// The page's clock when it answered, ms.
        t: f64,
    },
    /// Subscription `i` opened at page time `t` (ms).
    Open {
        /// The subscription.
        i: u32,
        /// When, ms.
        t: f64,
    },
    /// Subscription `i` closed or failed at page time `t` (ms); the page opens it again (an
    /// EventSource by itself, a WebSocket after a second).
    Closed {
        /// The subscription.
        i: u32,
        /// When, ms.
        t: f64,
    },
    /// Arrivals since the last batch, in the order the callbacks ran.
    Arrivals(Vec<PageEvent>),
    /// Everything batched before the flush was sent.
    Flushed(bool),
}

impl FromPage {
    /// Parses one text frame from the page.
    pub fn parse(text: &str) -> Result<FromPage, String> {
        serde_json::from_str(text).map_err(|e| format!("a message from the page: {e}: {text:.80}"))
    }
}

/// Whether every subscription is its own origin (scheme, host, port): Chromium holds at most 6
/// HTTP/1.1 connections per origin, so a seventh EventSource on one origin would wait for one
/// of the others to close, for ever. Device-served devices each listen on a loopback host of
/// their own (127.1.x.y), which is what makes this hold. Returns the first origin held twice.
pub fn shared_origin(urls: &[String]) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    urls.iter()
        .map(|u| origin(u))
        .find(|o| !seen.insert(o.clone()))
}

/// A URL's origin: everything before its path.
fn origin(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url[..after_scheme + i].to_string(),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_to_the_page_are_the_json_its_script_reads() {
        assert_eq!(ToPage::Probe(7).to_json(), r#"{"probe":7}"#);
        assert_eq!(ToPage::Flush(true).to_json(), r#"{"flush":true}"#);
        let subscribe = ToPage::Subscribe {
            with: Subscription::EventSource,
            urls: vec!["http://127.1.0.1:8080/events".into()],
        };
        assert_eq!(
            subscribe.to_json(),
            r#"{"subscribe":{"with":"EventSource","urls":["http://127.1.0.1:8080/events"]}}"#
        );
        let ws = ToPage::Subscribe {
            with: Subscription::WebSocket,
            urls: vec![],
        };
        assert!(ws.to_json().contains(r#""with":"WebSocket""#));
    }

    #[test]
    fn messages_from_the_page_parse() {
        assert_eq!(
            FromPage::parse(r#"{"hello":{"isolated":true,"agent":"HeadlessChrome/156"}}"#),
            Ok(FromPage::Hello {
                isolated: true,
                agent: "HeadlessChrome/156".into()
            })
        );
        assert_eq!(
            FromPage::parse(r#"{"probe":{"k":3,"t":1796199375946.905}}"#),
            Ok(FromPage::Probe {
                k: 3,
                t: 1796199375946.905
            })
        );
        assert_eq!(
            FromPage::parse(r#"{"open":{"i":2,"t":5.5}}"#),
            Ok(FromPage::Open { i: 2, t: 5.5 })
        );
        assert_eq!(
            FromPage::parse(r#"{"closed":{"i":2,"t":6}}"#),
            Ok(FromPage::Closed { i: 2, t: 6.0 })
        );
        assert_eq!(
            FromPage::parse(r#"{"arrivals":[[0,12.25,"{\"d\":1}"],[1,13,"x"]]}"#),
            Ok(FromPage::Arrivals(vec![
                (0, 12.25, r#"{"d":1}"#.into()),
                (1, 13.0, "x".into())
            ]))
        );
        assert_eq!(
            FromPage::parse(r#"{"flushed":true}"#),
            Ok(FromPage::Flushed(true))
        );
        assert!(FromPage::parse(r#"{"nonsense":1}"#).is_err());
    }

    #[test]
    fn devices_on_hosts_of_their_own_are_origins_of_their_own() {
        let urls = |hosts: &[&str]| -> Vec<String> {
            hosts.iter().map(|h| format!("http://{h}/events")).collect()
        };
        assert_eq!(
            shared_origin(&urls(&[
                "127.1.0.1:8080",
                "127.1.0.2:8080",
                "127.1.0.3:8080"
            ])),
            None
        );
        assert_eq!(
            shared_origin(&urls(&["127.0.0.1:8080", "127.0.0.1:8081"])),
            None,
            "another port is another origin"
        );
        assert_eq!(
            shared_origin(&urls(&["127.1.0.1:8080", "127.1.0.1:8080"])),
            Some("http://127.1.0.1:8080".into())
        );
    }
}
