//! Responses (RFC 3261 sections 8.2.6 and 21): the status line, the Via
//! lines copied in order (the top one with `received` and `rport` filled in,
//! sections 18.2.1 and RFC 3581), From, Call-ID and CSeq copied, To with a
//! tag of our own, then what the status needs: Contact for a 302, Allow for
//! 200 to OPTIONS and for 405, Retry-After for 503.
//!
//! Stateless and deterministic: the To tag is a hash of Call-ID, From tag
//! and CSeq number, so a retransmitted INVITE gets the very same answer,
//! byte for byte, from any event loop or node.

use super::config::{Piece, RouteInfo, Settings};
use super::message::Request;
use super::uri;
use crate::binding::Route;
use crate::number::Number;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

/// The methods x700 answers, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, OPTIONS";

/// What to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 302 to the route's callee.
    Redirect(Route),
    /// A status without more (a refused call: the code from the table).
    Status(u16),
    /// 200 to OPTIONS.
    Options,
    /// 405, with Allow.
    MethodNotAllowed,
    /// 400 with the reason as its phrase.
    BadRequest(&'static str),
}

impl Answer {
    /// The status code.
    pub fn code(self) -> u16 {
        match self {
            Answer::Redirect(_) => 302,
            Answer::Status(code) => code,
            Answer::Options => 200,
            Answer::MethodNotAllowed => 405,
            Answer::BadRequest(_) => 400,
        }
    }
}

/// Reason phrases of the statuses an operator is likely to configure
/// (RFC 3261 section 21 and its updates).
const REASONS: [(u16, &str); 28] = [
    (200, "OK"),
    (302, "Moved Temporarily"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (402, "Payment Required"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (406, "Not Acceptable"),
    (408, "Request Timeout"),
    (410, "Gone"),
    (480, "Temporarily Unavailable"),
    (483, "Too Many Hops"),
    (484, "Address Incomplete"),
    (485, "Ambiguous"),
    (486, "Busy Here"),
    (487, "Request Terminated"),
    (488, "Not Acceptable Here"),
    (500, "Server Internal Error"),
    (502, "Bad Gateway"),
    (503, "Service Unavailable"),
    (504, "Server Time-out"),
    (600, "Busy Everywhere"),
    (603, "Decline"),
    (604, "Does Not Exist Anywhere"),
    (606, "Not Acceptable"),
    (433, "Anonymity Disallowed"),
    (608, "Rejected"),
];

/// The reason phrase of a status; a code without its own names its class.
pub fn reason(code: u16) -> &'static str {
    if let Some(&(_, phrase)) = REASONS.iter().find(|&&(c, _)| c == code) {
        return phrase;
    }
    match code {
        400..=499 => "Request Failure",
        500..=599 => "Server Failure",
        _ => "Global Failure",
    }
}

/// Where the request came from, and the host `{host}` falls back to when
/// the Request-URI has none (a `tel:` URI).
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The packet's source.
    pub source: SocketAddr,
    /// The front-end's own address, as text.
    pub local_host: &'a [u8],
}

/// The top Via's first value: `(sent-by host, sent-by port, has rport)`;
/// `None` if it is not `SIP/2.0/transport sent-by`, and then the request
/// cannot be answered at all.
pub fn top_via<'a>(request: &Request<'a>) -> Option<(&'a [u8], Option<u16>, bool)> {
    if request.via_count == 0 {
        return None;
    }
    let line = request.vias[0];
    let value = &line[..line.iter().position(|&b| b == b',').unwrap_or(line.len())];
    let params_at = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    let mut words = value[..params_at]
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let protocol = words.next()?;
    if protocol.len() < 9 || !protocol[..8].eq_ignore_ascii_case(b"SIP/2.0/") {
        return None;
    }
    let sent_by = words.next()?;
    if words.next().is_some() {
        return None;
    }
    let (host, port) = if sent_by.first() == Some(&b'[') {
        let close = sent_by.iter().position(|&b| b == b']')?;
        (&sent_by[..=close], sent_by.get(close + 1..)?)
    } else {
        let colon = sent_by
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(sent_by.len());
        (&sent_by[..colon], &sent_by[colon..])
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        [] => None,
        [b':', digits @ ..] => {
            Some(super::message::decimal(digits).and_then(|p| u16::try_from(p).ok())?)
        }
        _ => return None,
    };
    let rport = value[params_at..].split(|&b| b == b';').any(|p| {
        p.trim_ascii().eq_ignore_ascii_case(b"rport") || starts_with_ci(p.trim_ascii(), b"rport=")
    });
    Some((host, port, rport))
}

fn starts_with_ci(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Where a UDP response goes (RFC 3261 section 18.2.2, RFC 3581): the
/// source address, and its port when the top Via asks for `rport` or names
/// none; else the Via's port.
pub fn reply_address(request: &Request<'_>, source: SocketAddr) -> Option<SocketAddr> {
    let (_, port, rport) = top_via(request)?;
    let port = match port {
        Some(port) if !rport => port,
        _ => source.port(),
    };
    Some(SocketAddr::new(source.ip(), port))
}

/// FNV-1a over the parts that name a transaction's answer.
fn to_tag(request: &Request<'_>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let from_tag = tag_of(request.from).unwrap_or_default();
    let number = request.cseq_number.to_le_bytes();
    for part in [request.call_id, b"\n", from_tag, b"\n", &number[..]] {
        for &byte in part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The `tag` parameter of a From or To value (after the URI).
pub fn tag_of(value: &[u8]) -> Option<&[u8]> {
    let after = match value.iter().position(|&b| b == b'>') {
        Some(close) => &value[close + 1..],
        None => value,
    };
    after.split(|&b| b == b';').skip(1).find_map(|p| {
        let p = p.trim_ascii();
        starts_with_ci(p, b"tag=").then(|| &p[4..])
    })
}

fn push_digits(out: &mut Vec<u8>, number: Number) {
    out.extend(number.leading_digits().map(|d| b'0' + d));
}

/// Writes the top Via with `received` (when its host is not the source's
/// address) and the `rport` value filled in.
fn write_top_via(out: &mut Vec<u8>, line: &[u8], source: SocketAddr) {
    let value_end = line.iter().position(|&b| b == b',').unwrap_or(line.len());
    let value = &line[..value_end];
    let params_at = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    out.extend_from_slice(&value[..params_at]);
    let mut has_received = false;
    for param in value[params_at..].split(|&b| b == b';').skip(1) {
        out.push(b';');
        if param.trim_ascii().eq_ignore_ascii_case(b"rport") {
            let _ = write!(out, "rport={}", source.port());
        } else {
            has_received |= starts_with_ci(param.trim_ascii(), b"received=");
            out.extend_from_slice(param);
        }
    }
    let source_ip = source.ip();
    let host_is_source = top_host_ip(&value[..params_at]) == Some(source_ip);
    if !host_is_source && !has_received {
        match source_ip {
            IpAddr::V4(v4) => {
                let _ = write!(out, ";received={v4}");
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, ";received=[{v6}]");
            }
        }
    }
    out.extend_from_slice(&line[value_end..]);
}

/// The sent-by host of a Via value (without parameters) as an address.
fn top_host_ip(sent: &[u8]) -> Option<IpAddr> {
    let sent_by = sent
        .split(|b| b.is_ascii_whitespace())
        .rfind(|w| !w.is_empty())?;
    let host = if sent_by.first() == Some(&b'[') {
        &sent_by[1..sent_by.iter().position(|&b| b == b']')?]
    } else {
        &sent_by[..sent_by
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(sent_by.len())]
    };
    std::str::from_utf8(host).ok()?.parse().ok()
}

/// Writes the whole response to `request` into `out` (cleared first).
pub fn write(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    answer: Answer,
    settings: &Settings,
    context: &Context<'_>,
) {
    out.clear();
    let code = answer.code();
    let phrase = match answer {
        Answer::BadRequest(why) => why,
        _ => reason(code),
    };
    let _ = write!(out, "SIP/2.0 {code} {phrase}\r\n");
    for (i, via) in request.vias[..request.via_count].iter().enumerate() {
        out.extend_from_slice(b"Via: ");
        if i == 0 {
            write_top_via(out, via, context.source);
        } else {
            out.extend_from_slice(via);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(request.from);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(request.to);
    if tag_of(request.to).is_none() {
        let _ = write!(out, ";tag={:016x}", to_tag(request));
    }
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(request.call_id);
    out.extend_from_slice(b"\r\nCSeq: ");
    out.extend_from_slice(request.cseq);
    out.extend_from_slice(b"\r\n");
    match answer {
        Answer::Redirect(route) => write_contact(out, request, &route, settings, context),
        Answer::Options | Answer::MethodNotAllowed => {
            let _ = write!(out, "Allow: {ALLOW}\r\n");
        }
        Answer::Status(503) if settings.retry_after_s > 0 => {
            let _ = write!(out, "Retry-After: {}\r\n", settings.retry_after_s);
        }
        Answer::Status(_) | Answer::BadRequest(_) => {}
    }
    out.extend_from_slice(b"Server: x700\r\nContent-Length: 0\r\n\r\n");
}

/// `Contact: <URI>` from the template, and the display number and the
/// recording flag where `route_info` puts them.
fn write_contact(
    out: &mut Vec<u8>,
    request: &Request<'_>,
    route: &Route,
    settings: &Settings,
    context: &Context<'_>,
) {
    out.extend_from_slice(b"Contact: <");
    for piece in &settings.contact {
        match piece {
            Piece::Text(text) => out.extend_from_slice(text),
            Piece::Callee => push_digits(out, route.callee),
            Piece::Display => push_digits(out, route.display),
            Piece::Host => {
                let host = uri::parts(request.uri)
                    .map(|p| p.host)
                    .filter(|h| !h.is_empty())
                    .unwrap_or(context.local_host);
                out.extend_from_slice(host);
            }
        }
    }
    let recording = u8::from(route.recording);
    match settings.route_info {
        RouteInfo::Uri => {
            out.extend_from_slice(b";x700-display=");
            push_digits(out, route.display);
            let _ = write!(out, ";x700-recording={recording}>\r\n");
        }
        RouteInfo::Header => {
            out.extend_from_slice(b">\r\nX700-Display: ");
            push_digits(out, route.display);
            let _ = write!(out, "\r\nX700-Recording: {recording}\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::BindingId;
    use crate::frontend::sip::message::parse;

    const INVITE: &[u8] = b"INVITE sip:700123456789012@x700.example;user=phone SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport, SIP/2.0/TCP b.example;branch=z9hG4bK0\r\n\
        Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
        From: <sip:13800138000@a.example>;tag=abc\r\n\
        To: <sip:700123456789012@x700.example>\r\n\
        Call-ID: call-1@a.example\r\n\
        CSeq: 7 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    fn route() -> Route {
        Route {
            callee: Number::from_digits(b"13900139000"),
            display: Number::from_digits(b"700123456789012"),
            recording: true,
            binding_id: BindingId(1),
            expires_in_s: 60,
        }
    }

    fn context() -> Context<'static> {
        Context {
            source: "10.0.0.9:40000".parse().unwrap(),
            local_host: b"127.0.0.1:5060",
        }
    }

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn a_route_answers_302_with_the_contact_and_the_vias_in_order() {
        let request = parse(INVITE).unwrap();
        let mut out = Vec::new();
        write(
            &mut out,
            &request,
            Answer::Redirect(route()),
            &Settings::default(),
            &context(),
        );
        let tag = format!("{:016x}", to_tag(&request));
        assert_eq!(
            text(&out),
            format!(
                "SIP/2.0 302 Moved Temporarily\r\n\
                 Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport=40000;received=10.0.0.9, SIP/2.0/TCP b.example;branch=z9hG4bK0\r\n\
                 Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
                 From: <sip:13800138000@a.example>;tag=abc\r\n\
                 To: <sip:700123456789012@x700.example>;tag={tag}\r\n\
                 Call-ID: call-1@a.example\r\n\
                 CSeq: 7 INVITE\r\n\
                 Contact: <sip:13900139000@x700.example;x700-display=700123456789012;x700-recording=1>\r\n\
                 Server: x700\r\nContent-Length: 0\r\n\r\n"
            )
        );
        // The same request, the same bytes.
        let mut again = Vec::new();
        write(
            &mut again,
            &request,
            Answer::Redirect(route()),
            &Settings::default(),
            &context(),
        );
        assert_eq!(out, again);
    }

    #[test]
    fn display_and_recording_may_go_in_headers() {
        let request = parse(INVITE).unwrap();
        let settings = Settings {
            route_info: RouteInfo::Header,
            contact: vec![
                Piece::Text(b"sip:".to_vec()),
                Piece::Callee,
                Piece::Text(b"@gw".to_vec()),
            ],
            ..Settings::default()
        };
        let mut out = Vec::new();
        write(
            &mut out,
            &request,
            Answer::Redirect(route()),
            &settings,
            &context(),
        );
        assert!(text(&out).contains(
            "Contact: <sip:13900139000@gw>\r\nX700-Display: 700123456789012\r\nX700-Recording: 1\r\n"
        ));
    }

    #[test]
    fn rejects_options_and_other_methods_carry_what_their_status_needs() {
        let request = parse(INVITE).unwrap();
        let mut out = Vec::new();
        write(
            &mut out,
            &request,
            Answer::Status(503),
            &Settings::default(),
            &context(),
        );
        assert!(text(&out).starts_with("SIP/2.0 503 Service Unavailable\r\n"));
        assert!(text(&out).contains("\r\nRetry-After: 5\r\n"));
        write(
            &mut out,
            &request,
            Answer::Status(404),
            &Settings::default(),
            &context(),
        );
        assert!(!text(&out).contains("Retry-After"));
        write(
            &mut out,
            &request,
            Answer::MethodNotAllowed,
            &Settings::default(),
            &context(),
        );
        assert!(text(&out).contains("\r\nAllow: INVITE, ACK, OPTIONS\r\n"));
        write(
            &mut out,
            &request,
            Answer::BadRequest("bad CSeq"),
            &Settings::default(),
            &context(),
        );
        assert!(text(&out).starts_with("SIP/2.0 400 bad CSeq\r\n"));
    }

    #[test]
    fn replies_go_where_the_top_via_says() {
        let request = parse(INVITE).unwrap();
        let source: SocketAddr = "10.0.0.9:40000".parse().unwrap();
        // rport: the source port.
        assert_eq!(reply_address(&request, source), Some(source));
        let plain = parse(
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK\r\n\
            From: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            reply_address(&plain, source),
            Some("10.0.0.9:5070".parse().unwrap())
        );
        let mut out = Vec::new();
        write(
            &mut out,
            &plain,
            Answer::Options,
            &Settings::default(),
            &context(),
        );
        // The Via's host is the source: no `received`.
        assert!(text(&out).contains("Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK\r\n"));
        let none = parse(
            b"OPTIONS sip:x SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\n\
            Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
        )
        .unwrap();
        assert_eq!(reply_address(&none, source), None);
    }

    #[test]
    fn tags_are_read_after_the_uri() {
        assert_eq!(tag_of(b"<sip:a@h;tag=no>;tag=yes"), Some(&b"yes"[..]));
        assert_eq!(tag_of(b"sip:a@h;tag=1"), Some(&b"1"[..]));
        assert_eq!(tag_of(b"<sip:a@h>"), None);
    }
}
