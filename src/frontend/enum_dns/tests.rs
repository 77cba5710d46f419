//! The ENUM core without sockets: names to lookups, answers byte by byte.

use super::settings::{never_a_party, wire_name, EnumSettings};
use super::wire::{self, class, decode, rcode, rtype};
use super::*;
use crate::binding::BindingId;
use crate::number::XPolicy;

fn zone() -> Zone {
    EnumSettings::default().zone(XPolicy::default()).unwrap()
}

fn query(id: u16, name: &str, qtype: u16, payload: Option<u16>) -> Vec<u8> {
    let mut message = id.to_be_bytes().to_vec();
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(payload.is_some())]);
    message.extend(wire_name(name).unwrap());
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&class::IN.to_be_bytes());
    if let Some(payload) = payload {
        wire::push_opt(&mut message, payload, 0, false);
    }
    message
}

/// The ENUM name of `digits`.
fn enum_name(digits: &str) -> String {
    let mut name: String = digits.chars().rev().flat_map(|c| [c, '.']).collect();
    name.push_str("6.8.e164.arpa.");
    name
}

fn ask(name: &str) -> Ask {
    zone().ask(&decode(&query(1, name, rtype::NAPTR, None)).unwrap())
}

fn lookup_of(x: &str, extension: Option<&str>) -> Ask {
    Ask::Number {
        query: LookupQuery {
            caller: never_a_party(),
            x: Number::from_digits(x.as_bytes()),
            extension: extension.map_or(Number::NONE, |e| Number::extension_key(e.as_bytes())),
        },
        empty_on_reject: false,
    }
}

#[test]
fn x_and_x_with_an_extension_become_lookups_by_a_caller_that_is_no_party() {
    assert!(crate::number::check_real(never_a_party()).is_err());
    assert_eq!(
        ask(&enum_name("700123456789012")),
        lookup_of("700123456789012", None)
    );
    assert_eq!(
        ask(&enum_name("7001234567890120012")),
        lookup_of("700123456789012", Some("0012"))
    );
    // Case does not matter (RFC 4343).
    assert_eq!(
        ask("2.1.0.9.8.7.6.5.4.3.2.1.0.0.7.6.8.E164.ARPA."),
        lookup_of("700123456789012", None)
    );
}

#[test]
fn other_names_are_the_apex_empty_nonexistent_or_not_ours() {
    assert_eq!(ask("6.8.e164.arpa."), Ask::Apex);
    // Digits that begin a 700 number: empty non-terminals.
    assert_eq!(ask(&enum_name("7")), Ask::EmptyNonTerminal);
    assert_eq!(ask(&enum_name("70012")), Ask::EmptyNonTerminal);
    // Digits no 700 number begins with, a letter, a two-digit label, a
    // number too long, a 15-digit number outside the 700 range.
    assert_eq!(ask(&enum_name("13800138000")), Ask::NoSuchName);
    assert_eq!(ask("a.6.8.e164.arpa."), Ask::NoSuchName);
    assert_eq!(ask("12.6.8.e164.arpa."), Ask::NoSuchName);
    assert_eq!(ask(&enum_name("70012345678901200123")), Ask::NoSuchName);
    assert_eq!(ask(&enum_name("800123456789012")), Ask::NoSuchName);
    // Outside the zone, in another class, or a transfer.
    assert_eq!(ask("8.e164.arpa."), Ask::Refused);
    assert_eq!(ask("6.8.e164.arpa.example."), Ask::Refused);
    assert_eq!(ask("."), Ask::Refused);
    let mut chaos = query(1, "6.8.e164.arpa.", rtype::SOA, None);
    let at = chaos.len() - 1;
    chaos[at] = 3;
    assert_eq!(zone().ask(&decode(&chaos).unwrap()), Ask::Refused);
    let axfr = query(1, "6.8.e164.arpa.", rtype::AXFR, None);
    assert_eq!(zone().ask(&decode(&axfr).unwrap()), Ask::Refused);
}

#[test]
fn legacy_numbers_are_looked_up_and_a_reject_is_nodata() {
    let legacy = EnumSettings::default()
        .zone(XPolicy { allow_legacy: true })
        .unwrap();
    let question = decode(&query(1, &enum_name("95123"), rtype::NAPTR, None)).unwrap();
    match legacy.ask(&question) {
        Ask::Number {
            query,
            empty_on_reject: true,
        } => assert_eq!(query.x, Number::from_digits(b"95123")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Zone::answer_of(Ok(LookupResult::Reject(Reject::NotBound)), true),
        Answer::NoData
    );
}

#[test]
fn rejects_are_nxdomain_and_failures_servfail() {
    for reject in [
        Reject::NotBound,
        Reject::NotAParty,
        Reject::Expired,
        Reject::TenantSuspended,
    ] {
        assert_eq!(
            Zone::answer_of(Ok(LookupResult::Reject(reject)), false),
            Answer::NoSuchName
        );
    }
    assert_eq!(
        Zone::answer_of(Ok(LookupResult::Reject(Reject::RateLimited)), false),
        Answer::ServerFailure
    );
    assert_eq!(
        Zone::answer_of(Err(crate::protocol::status::BUSY), false),
        Answer::ServerFailure
    );
}

fn route() -> Route {
    Route {
        callee: Number::from_digits(b"13800138000"),
        display: Number::from_digits(b"700123456789012"),
        recording: true,
        binding_id: BindingId(1),
        expires_in_s: 300,
    }
}

/// Guards the answer's exact bytes: the NAPTR a switch follows.
#[test]
fn a_route_answers_one_naptr_record_with_the_callee_in_its_uri() {
    let zone = EnumSettings {
        ttl_s: 60,
        ..EnumSettings::default()
    }
    .zone(XPolicy::default())
    .unwrap();
    let message = query(0x1234, &enum_name("700123456789012"), rtype::NAPTR, None);
    let question = decode(&message).unwrap();
    let mut out = Vec::new();
    let code = zone.write_answer(&question, Answer::Route(route()), 512, &mut out);
    assert_eq!(code, rcode::NOERROR);
    // Header: id, QR AA RD, NOERROR, 1 question, 1 answer.
    assert_eq!(out[..12], [0x12, 0x34, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0]);
    assert_eq!(out[12..message.len()], message[12..]);
    let record = &out[message.len()..];
    // Owner: a pointer to the question's name; NAPTR IN, TTL 60.
    assert_eq!(record[..10], [0xC0, 0x0C, 0, 35, 0, 1, 0, 0, 0, 60]);
    let regexp = b"!^.*$!sip:13800138000@localhost!";
    let mut rdata = vec![0, 100, 0, 10, 1, b'u', 7];
    rdata.extend_from_slice(b"E2U+sip");
    rdata.push(regexp.len() as u8);
    rdata.extend_from_slice(regexp);
    rdata.push(0);
    assert_eq!(
        usize::from(u16::from_be_bytes([record[10], record[11]])),
        rdata.len()
    );
    assert_eq!(record[12..], rdata[..]);
}

#[test]
fn the_ttl_never_outlives_the_binding_and_the_template_takes_every_field() {
    let zone = EnumSettings {
        ttl_s: 3600,
        template: "sip:+86{callee}@{host};display={display};rec={recording}".into(),
        host: "sbc.example".into(),
        ..EnumSettings::default()
    }
    .zone(XPolicy::default())
    .unwrap();
    let question = decode(&query(1, &enum_name("700123456789012"), rtype::ANY, None)).unwrap();
    let mut out = Vec::new();
    zone.write_answer(&question, Answer::Route(route()), 512, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("!^.*$!sip:+8613800138000@sbc.example;display=700123456789012;rec=1!"),
        "{text}"
    );
    let ttl_at = 12 + question.name().len() + 4 + 6;
    assert_eq!(out[ttl_at..ttl_at + 4], 300u32.to_be_bytes());
}

#[test]
fn nxdomain_and_nodata_carry_the_soa_of_the_apex() {
    let zone = zone();
    for (qtype, answer, code) in [
        (rtype::NAPTR, Answer::NoSuchName, rcode::NXDOMAIN),
        (rtype::NAPTR, Answer::NoData, rcode::NOERROR),
        // A number that routes has no A record.
        (1, Answer::Route(route()), rcode::NOERROR),
    ] {
        let message = query(5, &enum_name("700123456789012"), qtype, Some(1232));
        let question = decode(&message).unwrap();
        let mut out = Vec::new();
        assert_eq!(zone.write_answer(&question, answer, 512, &mut out), code);
        assert_eq!(out[3] & 0xF, code);
        // No answer, one authority (the SOA), one additional (the OPT).
        assert_eq!(out[6..12], [0, 0, 0, 1, 0, 1]);
        let soa = &out[message.len() - 11..];
        // Owner: a pointer to the suffix inside the question's name.
        let apex = 12 + question.name().len() - wire_name("6.8.e164.arpa.").unwrap().len();
        assert_eq!(soa[..4], [0xC0, apex as u8, 0, 6]);
        let mname = wire_name("localhost.").unwrap();
        assert_eq!(soa[12..12 + mname.len()], mname[..]);
    }
}

#[test]
fn the_apex_answers_soa_and_ns_and_nodata_for_other_types() {
    let zone = EnumSettings {
        ns: vec!["ns1.example.".into(), "ns2.example.".into()],
        ..EnumSettings::default()
    }
    .zone(XPolicy::default())
    .unwrap();
    for (qtype, answers, authorities) in [
        (rtype::SOA, 1, 0),
        (rtype::NS, 2, 0),
        (rtype::ANY, 3, 0),
        (rtype::NAPTR, 0, 1),
    ] {
        let question = decode(&query(5, "6.8.e164.arpa.", qtype, None)).unwrap();
        let mut out = Vec::new();
        let answer = Zone::answer_without_lookup(zone.ask(&question));
        assert_eq!(
            zone.write_answer(&question, answer, 512, &mut out),
            rcode::NOERROR
        );
        assert_eq!(out[6..10], [0, answers, 0, authorities], "type {qtype}");
        assert_eq!(out[2] & 0x04, 0x04, "authoritative");
    }
}

#[test]
fn an_answer_past_the_limit_is_cut_to_the_question_with_tc() {
    let zone = EnumSettings {
        ns: (0..16)
            .map(|i| format!("{}.ns{i}.example.", "n".repeat(60)))
            .collect(),
        ..EnumSettings::default()
    }
    .zone(XPolicy::default())
    .unwrap();
    let message = query(5, "6.8.e164.arpa.", rtype::NS, None);
    let question = decode(&message).unwrap();
    let mut full = Vec::new();
    zone.write_answer(&question, Answer::Apex, TCP_ANSWER_BYTES_MAX, &mut full);
    assert!(full.len() > 512);
    assert_eq!(full[2] & 0x02, 0, "no TC over TCP");
    let mut cut = Vec::new();
    zone.write_answer(&question, Answer::Apex, 512, &mut cut);
    assert_eq!(cut.len(), message.len());
    assert_eq!(cut[2] & 0x02, 0x02, "TC");
    assert_eq!(cut[6..12], [0, 0, 0, 0, 0, 0]);
}

#[test]
fn refused_and_servfail_carry_no_records_and_no_aa() {
    let question = decode(&query(5, "example.", rtype::NAPTR, None)).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        zone().write_answer(&question, Answer::Refused, 512, &mut out),
        rcode::REFUSED
    );
    assert_eq!(out[2] & 0x04, 0);
    assert_eq!(out[6..12], [0, 0, 0, 0, 0, 0]);
}
