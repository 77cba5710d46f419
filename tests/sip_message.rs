//! The SIP front-end's decoder never panics and answers deterministically:
//! the fuzz target's check (fuzz/check_sip.rs) run on stable over random
//! bytes and over valid requests mutated (bytes flipped, cut, spliced,
//! separators doubled), which reach far deeper than random bytes do.

use proptest::prelude::*;

include!("../fuzz/check_sip.rs");

/// Valid requests the mutations start from.
const SEEDS: [&str; 4] = [
    "INVITE sip:700123456789012@x700.example;user=phone SIP/2.0\r\n\
     Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport, SIP/2.0/TCP [::1]:5070;branch=z9hG4bK0\r\n\
     v: SIP/2.0/UDP h;branch=z9hG4bK2\r\nMax-Forwards: 70\r\n\
     f: \"A\" <sip:+8613800138000@a.example>;tag=abc\r\nt: <tel:+86-700-1234-5678-9012>\r\n\
     i: call-1@a.example\r\nCSeq: 1 INVITE\r\nP-Asserted-Identity: <tel:+8613900139000>\r\n\
     l: 4\r\n\r\nv=0\r\n",
    "OPTIONS sip:x700@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n ;branch=z9hG4bK3\r\n\
     From: <sip:ping@h>;tag=1\r\nTo: <sip:x700@h>\r\nCall-ID: c\r\nCSeq: 2 OPTIONS\r\n\r\n",
    "ACK sip:7001234567890120042@h SIP/2.0\r\nVia: SIP/2.0/UDP h:1;branch=z9hG4bK4\r\n\
     From: sip:13800138000@h;tag=2\r\nTo: sip:x@h;tag=3\r\nCall-ID: d\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
    "\r\n\r\nBYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK5\r\nFrom: <sip:a@b>;tag=4\r\n\
     To: <sip:c@d>\r\nCall-ID: e\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
];

#[test]
fn the_seeds_are_answered() {
    // INVITE, OPTIONS and BYE are answered under both lookups; ACK never.
    let answers: Vec<usize> = SEEDS
        .iter()
        .map(|s| check_sip_message(s.as_bytes()))
        .collect();
    assert_eq!(answers, [2, 2, 0, 2]);
}

/// One mutation of a seed.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Splice(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b":".to_vec()),
        Just(b";".to_vec()),
        Just(b"<".to_vec()),
        Just(b"@".to_vec()),
        Just(b"\r\n ".to_vec()),
        Just(b"Via: SIP/2.0/UDP".to_vec()),
        Just(b"Content-Length: 99999".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), piece).prop_map(|(at, p)| Mutation::Splice(at, p)),
        (any::<usize>(), 1usize..20).prop_map(|(at, n)| Mutation::Remove(at, n)),
    ]
}

fn apply(seed: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(at, b) => {
                if !bytes.is_empty() {
                    bytes[at % len] = *b;
                }
            }
            Mutation::Cut(at) => bytes.truncate(at % len),
            Mutation::Splice(at, piece) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, piece.iter().copied());
            }
            Mutation::Remove(at, n) => {
                let at = (at % len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_sip_message(&bytes);
    }

    #[test]
    fn mutated_requests_never_panic(
        seed in 0usize..SEEDS.len(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        check_sip_message(&apply(SEEDS[seed], &mutations));
    }
}

/// A value with a bare LF or CR would carry a header of its own into the
/// answer: such a request is refused (400, the 400 itself clean).
#[test]
fn bare_line_breaks_inside_headers_do_not_reach_the_answer() {
    for smuggled in [
        "From: <sip:a@b>;tag=1\nVia: SIP/2.0/UDP evil\r\n",
        "From: <sip:a@b>;tag=1\rX: y\r\n",
    ] {
        let message = format!(
            "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK\r\n{smuggled}\
             To: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
        );
        check_sip_message(message.as_bytes());
    }
}
