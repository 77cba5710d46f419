//! Metrics. Each event loop counts in plain local integers (no atomics, no
//! locks on the hot path) and publishes them every tick into its own
//! `WorkerMetrics`; a prometheus-client collector sums the workers at
//! scrape time.
//!
//! The page is OpenMetrics 1.0 text (prometheus-client's text encoder ends
//! it with `# EOF`, and adds `_total` to counters' samples). The encoder
//! neither escapes label values nor HELP texts, so every label value and
//! help text here is a plain identifier or sentence with no `\`, `"` or
//! line break (a unit test checks it).
//!
//! The folder, file by file: `counters` (the data the loops update and
//! the sums read from it), `reasons` (`Guard`, `SipUnanswered` and their
//! labels), `encoder` (the OpenMetrics page), `prometheus_text` (the same
//! page in the older text format) and `replica` (the lag and apply-stall
//! collectors). Every public item is re-exported here.

mod counters;
mod encoder;
mod prometheus_text;
mod reasons;
mod replica;

pub use counters::{LocalMetrics, NodeMetrics, WorkerMetrics};
pub use prometheus_text::prometheus_text;
pub use reasons::{Guard, SipUnanswered};
pub use replica::{ApplyStallMetrics, LagMetrics};
