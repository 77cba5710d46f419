//! The SIP redirect front-end's pure core (RFC 3261 as a redirect server,
//! statelessly): what a request asks (`decide`), and the response once the
//! lookup has answered (`response::write`). The event loops' glue is
//! `server::worker::sip`; docs/OPERATIONS.md, "SIP redirect front-end",
//! is the operator's view.
//!
//! The parser is our own (`message`): the crates on crates.io that parse
//! SIP (rsip, sipmsg, parsip) allocate per header or are unmaintained, and
//! a redirect server needs a dozen headers, read in place.
//!
//! For each request:
//! 1. `message::parse`: a malformed one is answered 400 when its top Via is
//!    usable, and dropped otherwise (nobody to answer);
//! 2. `decide`: ACK is absorbed; OPTIONS answers 200; other methods but
//!    INVITE answer 405; an INVITE becomes a `LookupQuery`: X (and an AXE
//!    extension) from the Request-URI, the caller from the From user, or
//!    from the P-Asserted-Identity user when the source is in
//!    `trusted_networks`; numbers that are not numbers answer `bad_number`;
//! 3. the event loop runs the lookup through the batch lookup, and
//!    `response::write` answers 302 with the Contact for a route, or the
//!    status table's code for a reject.

pub mod config;
pub mod message;
pub mod response;
pub mod uri;

pub use config::{Settings, SipConfig, StatusCodes};
pub use message::{parse, Method, ParseError, Request};
pub use response::{Answer, Context};

use crate::binding::{LookupQuery, LookupResult, Reject};
use crate::number::XPolicy;
use std::net::IpAddr;

/// What a parsed request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Look this up, then answer with `answer_of`.
    Lookup(LookupQuery),
    /// Answer now.
    Answer(Answer),
    /// Nothing (an ACK).
    Absorb,
}

/// What to do with `request` from `source` (steps 2 of the module docs).
pub fn decide(
    request: &Request<'_>,
    source: IpAddr,
    settings: &Settings,
    policy: XPolicy,
) -> Decision {
    match request.method {
        Method::Ack => Decision::Absorb,
        Method::Options => Decision::Answer(Answer::Options),
        Method::Other => Decision::Answer(Answer::MethodNotAllowed),
        Method::Invite => {
            let trusted = settings.trusted_networks.iter().any(|n| n.contains(source));
            let caller = match request.asserted_identity {
                Some(identity) if trusted => identity,
                _ => request.from,
            };
            match uri::query(request.uri, uri::uri_of(caller), policy) {
                Some(query) => Decision::Lookup(query),
                None => Decision::Answer(answer_of(
                    &LookupResult::Reject(Reject::BadNumber),
                    settings,
                )),
            }
        }
    }
}

/// The answer to a lookup's result.
pub fn answer_of(result: &LookupResult, settings: &Settings) -> Answer {
    match result {
        LookupResult::Route(route) => Answer::Redirect(*route),
        LookupResult::Reject(reject) => Answer::Status(settings.status.of(*reject)),
    }
}

/// The answer when the node could not look up (its queues were full, or
/// it is stopping): the table's `busy`.
pub fn busy(settings: &Settings) -> Answer {
    Answer::Status(settings.status.busy)
}

/// Why a message gets no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// An ACK, absorbed.
    Ack,
    /// A response: x700 sends no requests.
    Response,
    /// No usable Via (or no From, To, Call-ID, CSeq to copy): nobody to
    /// answer.
    NoVia,
}

/// What one received message leads to: steps 1 and 2 of the module docs.
#[derive(Clone, Copy, Debug)]
pub enum Step<'a> {
    /// Nothing is sent.
    Drop(Unanswered),
    /// Answer `request` now.
    Respond(Request<'a>, Answer),
    /// Look up, then answer `request`.
    Lookup(Request<'a>, LookupQuery),
}

/// The reason phrase of the 400 to a message over the size limit.
pub const TOO_LARGE: &str = "Message Too Large";

/// Steps 1 and 2 for one whole message (a datagram, or one framed off a
/// stream). A message over `settings.message_bytes_max` (a datagram cut
/// at the limit) is answered 400 when what was read names a Via.
pub fn step<'a>(
    message: &'a [u8],
    source: IpAddr,
    settings: &Settings,
    policy: XPolicy,
) -> Step<'a> {
    let refused = |why| match message::salvage(message) {
        Some(request) => Step::Respond(request, Answer::BadRequest(why)),
        None => Step::Drop(Unanswered::NoVia),
    };
    let next = if message.len() > settings.message_bytes_max {
        refused(TOO_LARGE)
    } else {
        match parse(message) {
            Ok(request) => match decide(&request, source, settings, policy) {
                Decision::Absorb => Step::Drop(Unanswered::Ack),
                Decision::Answer(answer) => Step::Respond(request, answer),
                Decision::Lookup(query) => Step::Lookup(request, query),
            },
            Err(ParseError::Response) => Step::Drop(Unanswered::Response),
            Err(ParseError::Malformed(why)) => refused(why),
        }
    };
    match next {
        Step::Respond(request, _) | Step::Lookup(request, _)
            if response::top_via(&request).is_none() =>
        {
            Step::Drop(Unanswered::NoVia)
        }
        other => other,
    }
}

/// The whole path for one message whose lookup is answered by `lookup`,
/// as a function of bytes: what the fuzz target and the property test
/// drive. Writes the response to `out` (left empty: nothing to send).
pub fn answer_message(
    message: &[u8],
    source: std::net::SocketAddr,
    settings: &Settings,
    lookup: impl FnOnce(&LookupQuery) -> LookupResult,
    out: &mut Vec<u8>,
) {
    out.clear();
    let context = Context {
        source,
        local_host: b"127.0.0.1",
    };
    match step(message, source.ip(), settings, XPolicy::default()) {
        Step::Drop(_) => {}
        Step::Respond(request, answer) => {
            response::write(out, &request, answer, settings, &context);
        }
        Step::Lookup(request, query) => {
            let answer = answer_of(&lookup(&query), settings);
            response::write(out, &request, answer, settings, &context);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::Number;

    fn invite(from: &str, asserted: &str) -> Vec<u8> {
        format!(
            "INVITE sip:700123456789012@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
             From: <{from}>;tag=1\r\nTo: <sip:700123456789012@h>\r\nCall-ID: c\r\n\
             CSeq: 1 INVITE\r\n{asserted}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_caller_is_the_asserted_identity_only_from_trusted_networks() {
        let message = invite(
            "sip:13800138000@a",
            "P-Asserted-Identity: <tel:+8613900139000>\r\n",
        );
        let request = parse(&message).unwrap();
        let trusted = Settings {
            trusted_networks: vec![crate::server::config::Network::parse("10.0.0.0/8").unwrap()],
            ..Settings::default()
        };
        let caller = |settings: &Settings, source: &str| match decide(
            &request,
            source.parse().unwrap(),
            settings,
            XPolicy::default(),
        ) {
            Decision::Lookup(query) => query.caller,
            other => panic!("{other:?}"),
        };
        let from = Number::from_digits(b"13800138000");
        let asserted = Number::from_digits(b"13900139000");
        assert_eq!(caller(&Settings::default(), "10.1.1.1"), from);
        assert_eq!(caller(&trusted, "10.1.1.1"), asserted);
        assert_eq!(caller(&trusted, "192.168.1.1"), from);
    }

    #[test]
    fn a_node_that_cannot_look_up_answers_busy_with_retry_after() {
        let message = invite("sip:13800138000@a", "");
        let request = parse(&message).unwrap();
        let settings = Settings::default();
        assert_eq!(busy(&settings), Answer::Status(503));
        let mut out = Vec::new();
        let context = Context {
            source: "10.0.0.1:5060".parse().unwrap(),
            local_host: b"h",
        };
        response::write(&mut out, &request, busy(&settings), &settings, &context);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("SIP/2.0 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
    }

    #[test]
    fn every_reject_has_its_status() {
        let settings = Settings::default();
        let expected = [
            (Reject::NotBound, 404),
            (Reject::Expired, 404),
            (Reject::DirectionDenied, 403),
            (Reject::NotAParty, 403),
            (Reject::BadNumber, 484),
            (Reject::TenantSuspended, 403),
            (Reject::Blocked, 403),
            (Reject::RateLimited, 503),
        ];
        for (reject, code) in expected {
            let answer = answer_of(&LookupResult::Reject(reject), &settings);
            assert_eq!(answer, Answer::Status(code), "{reject:?}");
        }
    }

    #[test]
    fn a_caller_that_is_no_number_answers_bad_number() {
        let message = invite("sip:anonymous@anonymous.invalid", "");
        let request = parse(&message).unwrap();
        assert_eq!(
            decide(
                &request,
                "10.0.0.1".parse().unwrap(),
                &Settings::default(),
                XPolicy::default()
            ),
            Decision::Answer(Answer::Status(484))
        );
    }
}
