// The ENUM query check shared by the fuzz target (fuzz/fuzz_targets/
// enum_query.rs) and the property test (tests/enum_dns.rs), both of which
// `include!` this file. Plain `//` comments only.
//
// For any bytes at all, read as a DNS query:
// - nothing panics;
// - a query that decodes gets, from a strict zone and from a legacy zone
//   with a long template, for every outcome its lookup could have, an
//   answer that starts with its id, has QR set, carries the rcode the
//   writer returned, and fits the limit it was written for (or is cut to
//   its header and question with TC set);
// - every answer, read back as a query, is ignored (QR is set): two
//   servers can never answer each other forever;
// - a query that does not decode is ignored or answered with a bare
//   header carrying its id.

fn check_enum(bytes: &[u8]) {
    use x700::binding::{BindingId, LookupResult, Reject, Route};
    use x700::frontend::enum_dns::{self, Answer, Ask, EnumSettings, Fault, Zone};
    use x700::number::{Number, XPolicy};

    let strict = EnumSettings::default()
        .zone(XPolicy::default())
        .expect("default zone");
    let legacy = EnumSettings {
        template: format!("sip:{{callee}};d={{display}};r={{recording}}@{}", "h".repeat(150)),
        ns: (0..16).map(|i| format!("ns{i}.{}.example.", "n".repeat(50))).collect(),
        ..EnumSettings::default()
    }
    .zone(XPolicy { allow_legacy: true })
    .expect("legacy zone");
    let question = match enum_dns::decode(bytes) {
        Ok(question) => question,
        Err(Fault::Ignore) => return,
        Err(Fault::Answer { id, flags, rcode }) => {
            let mut out = Vec::new();
            let code = enum_dns::write_fault(id, flags, rcode, 1232, &mut out);
            assert_eq!(out[..2], id.to_be_bytes());
            assert_eq!(out[2] & 0x80, 0x80);
            assert!(matches!(enum_dns::decode(&out), Err(Fault::Ignore)));
            assert_eq!(code, rcode);
            return;
        }
    };
    let route = Route {
        callee: Number::from_digits(b"13800138000"),
        display: Number::from_digits(b"700123456789012"),
        recording: bytes.len().is_multiple_of(2),
        binding_id: BindingId(1),
        expires_in_s: u32::from(bytes.first().copied().unwrap_or(0)),
    };
    for zone in [&strict, &legacy] {
        let ask = zone.ask(&question);
        let answers: Vec<Answer> = match ask {
            Ask::Number { empty_on_reject, .. } => [
                Ok(LookupResult::Route(route)),
                Ok(LookupResult::Reject(Reject::NotBound)),
                Ok(LookupResult::Reject(Reject::NotAParty)),
                Ok(LookupResult::Reject(Reject::RateLimited)),
                Err(7),
            ]
            .into_iter()
            .map(|result| Zone::answer_of(result, empty_on_reject))
            .collect(),
            other => vec![Zone::answer_without_lookup(other), Answer::Route(route)],
        };
        for answer in answers {
            for limit in [
                enum_dns::wire::UDP_PLAIN_BYTES,
                zone.udp_answer_bytes_max(&question),
                enum_dns::TCP_ANSWER_BYTES_MAX,
            ] {
                let mut out = Vec::new();
                let code = zone.write_answer(&question, answer, limit, &mut out);
                assert_eq!(out[..2], question.id.to_be_bytes());
                assert_eq!(out[2] & 0x80, 0x80);
                assert_eq!(out[3] & 0x0F, code);
                let truncated = out[2] & 0x02 != 0;
                if truncated {
                    let opt = if question.edns.is_some() { 11 } else { 0 };
                    assert_eq!(out.len(), 12 + question.name().len() + 4 + opt);
                } else {
                    assert!(out.len() <= limit, "{} bytes over a {limit}-byte limit", out.len());
                }
                assert!(matches!(enum_dns::decode(&out), Err(Fault::Ignore)));
            }
        }
    }
}
