//! fleetbench's library half: everything the `fleetbench` binary does, testable from tests/.
//!
//! - [`scenario`]: scenario files (TOML), validated with the file, line and key named.
//! - [`runner`]: runs each variant with the sink and the fleet as child processes ([`child`]),
//!   samples their CPU and memory ([`procstat`]) and turns their [`records`] into results.
//! - [`measure`]: the measurement core (latency, delivery, overhead), transport-agnostic.
//! - [`results`]: `results.json`, the public record of a run; [`table`]: its terminal summary.
//! - [`machine`]: what the run ran on; [`disk`]: the raw records' size, estimated before a run.
//! - [`role`]: the child processes' roles (sink server, fleet, collector), each a plan file
//!   and a `run`; [`broker`]: the embedded MQTT broker (rumqttd), run as `fleetbench broker`.
//! - [`live`]: a live view of a run while it goes (`fleetbench run --live`): a page served
//!   over HTTP with server-sent events, and the progress bar's place and time left.
//! - [`browser`]: a real browser as the consumer (`[consumer] browser = true`): headless
//!   Chromium on a page fleetbench serves, run as `fleetbench browser`.
//! - [`k8s`]: a scenario as Kubernetes manifests, its fleet split over pods
//!   (`fleetbench k8s render`).
pub mod baseline;
pub mod broker;
pub mod browser;
pub mod child;
pub mod compare;
pub mod disk;
pub mod distributed;
pub mod hardware;
pub mod k8s;
pub mod live;
pub mod machine;
pub mod measure;
pub mod procstat;
pub mod records;
pub mod results;
pub mod role;
pub mod runner;
pub mod saturate;
pub mod scenario;
pub mod table;
pub mod wifi;
