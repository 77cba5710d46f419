// The SIP message check shared by the fuzz target (fuzz/fuzz_targets/
// sip_message.rs) and the property test in tests/sip_message.rs, both of
// which `include!` this file. Plain `//` comments only: an included file
// cannot carry inner doc comments.
//
// What it checks, for any bytes at all, as a datagram and as a TCP stream:
// - nothing panics: `frame_length`, `parse`, `salvage`, `step` and the
//   response writer, with a lookup that routes and one that refuses;
// - a message is answered the same bytes twice (statelessness);
// - an answer is a whole response: a status line, Content-Length: 0 and
//   the empty line at its end, one Via line per Via line of the request,
//   and no bare CR or LF inside a line (no header smuggled in a value);
// - a stream's framed messages lie within the bytes and the size limit.

/// Checks `bytes`; returns how many answers were written.
fn check_sip_message(bytes: &[u8]) -> usize {
    use x700::binding::{BindingId, LookupResult, Reject, Route};
    use x700::frontend::sip::{self, message, Settings};
    use x700::number::Number;

    let settings = Settings::default();
    let source: std::net::SocketAddr = "10.1.2.3:5060".parse().expect("address");
    let route = LookupResult::Route(Route {
        callee: Number::from_digits(b"13900139000"),
        display: Number::from_digits(b"700123456789012"),
        recording: true,
        binding_id: BindingId(1),
        expires_in_s: 60,
    });
    let mut answers = 0;
    for result in [route, LookupResult::Reject(Reject::RateLimited)] {
        let mut out = Vec::new();
        sip::answer_message(bytes, source, &settings, |_| result, &mut out);
        let mut again = Vec::new();
        sip::answer_message(bytes, source, &settings, |_| result, &mut again);
        assert_eq!(out, again, "two answers to the same message differ");
        if out.is_empty() {
            continue;
        }
        answers += 1;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("SIP/2.0 "), "{text:?}");
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text:?}");
        let request = message::parse(bytes)
            .ok()
            .or_else(|| message::salvage(bytes))
            .expect("an answered message has its headers");
        // No bare CR or LF inside a line: a header cannot smuggle another.
        let flat = text.replace("\r\n", "");
        assert!(!flat.contains(['\r', '\n']), "a bare CR or LF in {text:?}");
        let vias = text.matches("\r\nVia: ").count();
        assert_eq!(vias, request.via_count, "{text:?}");
    }
    let limit = settings.message_bytes_max;
    let mut rest = bytes;
    while let Ok(Some(length)) = message::frame_length(rest, limit) {
        assert!(length > 0 && length <= rest.len(), "frame outside the bytes");
        let _ = message::parse(&rest[..length]);
        rest = &rest[length..];
    }
    let _ = message::salvage(bytes);
    answers
}
