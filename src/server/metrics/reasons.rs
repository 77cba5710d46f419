//! The reasons the loops count under one metric with a `reason` label:
//! `Guard` (what a node refuses or cuts off to protect itself) and
//! `SipUnanswered` (why a SIP message got no answer), each with the table
//! that gives its slot, metric name and label.

/// Things a node refuses or cuts off to protect itself, each counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// A connection refused: the node holds `connections_max`.
    RefusedNodeFull,
    /// A connection refused: its source holds `connections_per_source_max`.
    RefusedPerSource,
    /// Closed: no HELLO within `hello_deadline_ms`.
    HelloDeadline,
    /// Closed: a session silent for `idle_timeout_s`.
    Idle,
    /// Closed: unread answers beyond `output_buffer_bytes_max`.
    UnreadOutput,
    /// A UDP lookup dropped by `udp_lookups_per_source_per_s`.
    UdpRateLimited,
    /// A request answered BUSY because the node's unsent output is beyond
    /// `output_bytes_total_max`.
    OutputFull,
}

/// Guards in slot order, with the metric and label each is reported under.
pub(super) const GUARDS: [(Guard, &str, &str); 7] = [
    (
        Guard::RefusedNodeFull,
        "x700_connections_refused",
        "node_full",
    ),
    (
        Guard::RefusedPerSource,
        "x700_connections_refused",
        "per_source",
    ),
    (
        Guard::HelloDeadline,
        "x700_connections_closed",
        "hello_deadline",
    ),
    (Guard::Idle, "x700_connections_closed", "idle"),
    (
        Guard::UnreadOutput,
        "x700_connections_closed",
        "unread_output",
    ),
    (Guard::UdpRateLimited, "x700_udp_lookups_rate_limited", ""),
    (Guard::OutputFull, "x700_requests_refused_output_full", ""),
];

/// Why a SIP message got no answer, each counted
/// (`x700_sip_unanswered_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipUnanswered {
    /// An ACK, absorbed.
    Ack,
    /// A response (x700 sends no requests).
    Response,
    /// No usable Via: nobody to answer.
    NoVia,
    /// From outside `switch_networks`.
    NotSwitchNetwork,
    /// Over `udp_lookups_per_source_per_s`.
    RateLimited,
}

/// Reasons in slot order, with their label.
pub(super) const SIP_UNANSWERED: [(SipUnanswered, &str); 5] = [
    (SipUnanswered::Ack, "ack"),
    (SipUnanswered::Response, "response"),
    (SipUnanswered::NoVia, "no_via"),
    (SipUnanswered::NotSwitchNetwork, "not_switch_network"),
    (SipUnanswered::RateLimited, "rate_limited"),
];
