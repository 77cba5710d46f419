//! A SIP request, parsed in place (RFC 3261 section 7): the request line
//! and the headers a redirect server needs, as slices of the received
//! bytes. No allocation: a datagram's request is parsed, answered and
//! forgotten, and a request waiting for its lookup is parsed again from its
//! kept bytes when the answer arrives.
//!
//! What is refused, and how (the caller turns `Malformed` into 400 when the
//! request has a usable Via, and into silence otherwise, as RFC 3261
//! section 18.3 and 16.3 expect of a server that cannot answer):
//! - a start line that is not `METHOD SP Request-URI SP SIP/2.0`;
//! - a header line without a colon, a header name that is not a token;
//! - more than `HEADERS_MAX` header lines or `VIAS_MAX` Via lines;
//! - a missing or repeated From, To, Call-ID or CSeq, a CSeq whose method is
//!   not the request's, a Content-Length or Max-Forwards that is not a
//!   number, a body shorter than its Content-Length;
//! - a response (status line): a redirect server never sent a request, so
//!   a response is dropped without a word.

/// Header lines read at most; a request with more is refused.
pub const HEADERS_MAX: usize = 64;
/// Via header lines kept at most (each may hold several values).
pub const VIAS_MAX: usize = 16;

/// The methods x700 tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Answered 302 or a reject status.
    Invite,
    /// Absorbed: the ACK of a final answer is not answered.
    Ack,
    /// Answered 200: the keep-alive of SBCs and dispatchers.
    Options,
    /// Anything else: answered 405.
    Other,
}

/// A parsed request: slices of the message it was parsed from.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The method as written.
    pub method_name: &'a [u8],
    /// The Request-URI.
    pub uri: &'a [u8],
    /// The Via header values, in order (`vias[..via_count]`).
    pub vias: [&'a [u8]; VIAS_MAX],
    /// How many Via lines there are.
    pub via_count: usize,
    /// The From value.
    pub from: &'a [u8],
    /// The To value.
    pub to: &'a [u8],
    /// The Call-ID value.
    pub call_id: &'a [u8],
    /// The CSeq value.
    pub cseq: &'a [u8],
    /// The CSeq sequence number.
    pub cseq_number: u32,
    /// Max-Forwards, if present.
    pub max_forwards: Option<u8>,
    /// The first P-Asserted-Identity value, if any.
    pub asserted_identity: Option<&'a [u8]>,
    /// The body (`Content-Length` bytes; what follows it is ignored).
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// A request line read, no header yet.
    fn start(method: Method, method_name: &'a [u8], uri: &'a [u8]) -> Request<'a> {
        Request {
            method,
            method_name,
            uri,
            vias: [&[]; VIAS_MAX],
            via_count: 0,
            from: &[],
            to: &[],
            call_id: &[],
            cseq: &[],
            cseq_number: 0,
            max_forwards: None,
            asserted_identity: None,
            body: &[],
        }
    }
}

/// Why a message is not a request x700 can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a well-formed request; the reason goes in the 400's phrase.
    Malformed(&'static str),
    /// A response: dropped.
    Response,
}

fn malformed<T>(reason: &'static str) -> Result<T, ParseError> {
    Err(ParseError::Malformed(reason))
}

/// The headers x700 reads, by full or compact name (RFC 3261 section 7.3.3).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Via,
    From,
    To,
    CallId,
    CSeq,
    ContentLength,
    MaxForwards,
    AssertedIdentity,
    Other,
}

fn known(name: &[u8]) -> Known {
    let is = |full: &[u8]| name.eq_ignore_ascii_case(full);
    if is(b"via") || is(b"v") {
        Known::Via
    } else if is(b"from") || is(b"f") {
        Known::From
    } else if is(b"to") || is(b"t") {
        Known::To
    } else if is(b"call-id") || is(b"i") {
        Known::CallId
    } else if is(b"cseq") {
        Known::CSeq
    } else if is(b"content-length") || is(b"l") {
        Known::ContentLength
    } else if is(b"max-forwards") {
        Known::MaxForwards
    } else if is(b"p-asserted-identity") {
        Known::AssertedIdentity
    } else {
        Known::Other
    }
}

/// RFC 3261's `token` characters.
fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte)
}

/// The index of the first CRLF at or after `from`.
fn line_end(message: &[u8], from: usize) -> Option<usize> {
    message
        .get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// True if `header` holds a CR or LF that is not part of a fold (CRLF then
/// a space or tab): copied into an answer, it would end the line early and
/// start a header of the sender's choosing.
fn has_bare_line_break(header: &[u8]) -> bool {
    // Most headers hold no CR or LF at all: one quick pass says so.
    if !header.iter().any(|&b| b == b'\r' || b == b'\n') {
        return false;
    }
    header.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => {
            header.get(i + 1) != Some(&b'\n') || !matches!(header.get(i + 2), Some(b' ' | b'\t'))
        }
        b'\n' => i == 0 || header[i - 1] != b'\r',
        _ => false,
    })
}

/// Parses a decimal number of at most nine digits (whitespace around it
/// allowed).
pub fn decimal(text: &[u8]) -> Option<u32> {
    let digits = text.trim_ascii();
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')),
    )
}

/// Parses one whole message (a datagram, or a message framed off a TCP
/// stream by `frame_length`). Leading CRLFs (keep-alives) are skipped.
pub fn parse(message: &[u8]) -> Result<Request<'_>, ParseError> {
    let mut start = 0;
    while message.get(start..start + 2) == Some(b"\r\n") {
        start += 2;
    }
    let Some(first_end) = line_end(message, start) else {
        return malformed("no start line");
    };
    let line = &message[start..first_end];
    if line.starts_with(b"SIP/") {
        return Err(ParseError::Response);
    }
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method_name), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return malformed("bad request line");
    };
    if method_name.is_empty() || !method_name.iter().all(|&b| is_token(b)) {
        return malformed("bad method");
    }
    if uri.is_empty() || !uri.iter().all(|&b| b.is_ascii_graphic()) {
        return malformed("bad request-uri");
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return malformed("version is not SIP/2.0");
    }
    let method = match method_name {
        b"INVITE" => Method::Invite,
        b"ACK" => Method::Ack,
        b"OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let mut request = Request::start(method, method_name, uri);
    let mut content_length = None;
    let mut position = first_end + 2;
    let mut lines = 0;
    let mut seen = [false; 4];
    loop {
        let Some(end) = line_end(message, position) else {
            return malformed("headers do not end with an empty line");
        };
        if end == position {
            position = end + 2;
            break;
        }
        // Folded lines (RFC 3261 section 7.3.1) belong to the header
        // above: its value runs on over them.
        let mut value_end = end;
        while matches!(message.get(value_end + 2), Some(b' ' | b'\t')) {
            let Some(next) = line_end(message, value_end + 2) else {
                return malformed("headers do not end with an empty line");
            };
            value_end = next;
        }
        lines += 1;
        if lines > HEADERS_MAX {
            return malformed("too many header lines");
        }
        let header = &message[position..value_end];
        position = value_end + 2;
        if has_bare_line_break(header) {
            return malformed("a bare CR or LF inside a header");
        }
        let Some(colon) = header.iter().position(|&b| b == b':') else {
            return malformed("header line without a colon");
        };
        let name = header[..colon].trim_ascii_end();
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return malformed("bad header name");
        }
        let value = header[colon + 1..].trim_ascii();
        let once = |seen: &mut [bool; 4], slot: usize| {
            if std::mem::replace(&mut seen[slot], true) {
                malformed("a header that must appear once is repeated")
            } else {
                Ok(())
            }
        };
        match known(name) {
            Known::Via => {
                if request.via_count == VIAS_MAX {
                    return malformed("too many Via lines");
                }
                request.vias[request.via_count] = value;
                request.via_count += 1;
            }
            Known::From => {
                once(&mut seen, 0)?;
                request.from = value;
            }
            Known::To => {
                once(&mut seen, 1)?;
                request.to = value;
            }
            Known::CallId => {
                once(&mut seen, 2)?;
                request.call_id = value;
            }
            Known::CSeq => {
                once(&mut seen, 3)?;
                request.cseq = value;
            }
            Known::ContentLength => {
                let Some(length) = decimal(value) else {
                    return malformed("bad Content-Length");
                };
                if content_length.is_some_and(|l| l != length) {
                    return malformed("two different Content-Lengths");
                }
                content_length = Some(length);
            }
            Known::MaxForwards => {
                let Some(hops) = decimal(value).and_then(|n| u8::try_from(n).ok()) else {
                    return malformed("bad Max-Forwards");
                };
                request.max_forwards = Some(hops);
            }
            Known::AssertedIdentity => {
                if request.asserted_identity.is_none() {
                    request.asserted_identity = Some(value);
                }
            }
            Known::Other => {}
        }
    }
    if seen != [true; 4] || request.call_id.is_empty() {
        return malformed("From, To, Call-ID and CSeq are required");
    }
    let mut cseq = request.cseq.split(|b| b.is_ascii_whitespace());
    let number = cseq.next().and_then(decimal);
    let cseq_method = cseq.find(|part| !part.is_empty());
    match (number, cseq_method) {
        (Some(number), Some(name)) if name == request.method_name => request.cseq_number = number,
        _ => return malformed("bad CSeq"),
    }
    let rest = &message[position.min(message.len())..];
    let length = content_length.map_or(rest.len(), |l| l as usize);
    let Some(body) = rest.get(..length) else {
        return malformed("body shorter than Content-Length");
    };
    request.body = body;
    Ok(request)
}

/// For a message `parse` refused (or one cut at the size limit): its Via,
/// From, To, Call-ID and CSeq, read leniently, so that a 400 can be
/// addressed (RFC 3261 section 8.2.6 copies them). `None` when they are
/// not all there: nobody can be answered, the message is dropped.
pub fn salvage(message: &[u8]) -> Option<Request<'_>> {
    let first_end = line_end(message, 0).unwrap_or(message.len());
    let method_name = message[..first_end].split(|&b| b == b' ').next()?;
    let mut request = Request::start(Method::Other, method_name, &[]);
    let head = &message[(first_end + 2).min(message.len())..];
    for line in head.split(|&b| b == b'\n').take(HEADERS_MAX) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line.contains(&b'\r') {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let slot = match known(line[..colon].trim_ascii_end()) {
            Known::Via if request.via_count < VIAS_MAX => {
                request.vias[request.via_count] = value;
                request.via_count += 1;
                continue;
            }
            Known::From => &mut request.from,
            Known::To => &mut request.to,
            Known::CallId => &mut request.call_id,
            Known::CSeq => &mut request.cseq,
            _ => continue,
        };
        if slot.is_empty() {
            *slot = value;
        }
    }
    let complete = request.via_count > 0
        && ![request.from, request.to, request.call_id, request.cseq].contains(&&[][..]);
    complete.then_some(request)
}

/// Why a TCP stream cannot be framed any further: the connection is
/// closed (after a 400 when the request can be read, RFC 3261 section
/// 18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The headers do not end within the size limit, or headers and body
    /// together pass it.
    TooLarge,
    /// No Content-Length, or one that is not a number: on a stream the end
    /// of the message cannot be found (RFC 3261 section 18.3 makes it
    /// mandatory there).
    NoLength,
}

/// For a TCP stream: the length of the first whole message in `input`
/// (leading CRLF keep-alives included), `None` if more bytes are needed.
/// Messages are framed by the empty line and Content-Length.
pub fn frame_length(input: &[u8], bytes_max: usize) -> Result<Option<usize>, FrameError> {
    let mut start = 0;
    while input.get(start..start + 2) == Some(b"\r\n") {
        start += 2;
    }
    let window = &input[start..input.len().min(start + bytes_max)];
    let Some(head) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        if input.len() - start >= bytes_max {
            return Err(FrameError::TooLarge);
        }
        return Ok(None);
    };
    let mut length = None;
    for line in window[..head].split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if known(line[..colon].trim_ascii_end()) == Known::ContentLength {
            length = Some(decimal(&line[colon + 1..]).ok_or(FrameError::NoLength)?);
        }
    }
    let Some(length) = length else {
        return Err(FrameError::NoLength);
    };
    let total = head + 4 + length as usize;
    if total > bytes_max {
        return Err(FrameError::TooLarge);
    }
    Ok((input.len() >= start + total).then_some(start + total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:700123456789012@x700.example SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
        v: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
        Max-Forwards: 70\r\n\
        f: <sip:13800138000@a.example>;tag=abc\r\n\
        t: <sip:700123456789012@x700.example>\r\n\
        i: call-1@a.example\r\n\
        CSeq: 1 INVITE\r\n\
        P-Asserted-Identity: <tel:+8613900139000>\r\n\
        l: 4\r\n\r\nv=0\r\n";

    #[test]
    fn an_invite_with_compact_headers_parses() {
        let request = parse(INVITE).unwrap();
        assert_eq!(request.method, Method::Invite);
        assert_eq!(request.uri, b"sip:700123456789012@x700.example");
        assert_eq!(request.via_count, 2);
        assert_eq!(request.vias[1], b"SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2");
        assert_eq!(request.from, b"<sip:13800138000@a.example>;tag=abc");
        assert_eq!(request.call_id, b"call-1@a.example");
        assert_eq!(request.cseq_number, 1);
        assert_eq!(request.max_forwards, Some(70));
        assert_eq!(
            request.asserted_identity,
            Some(&b"<tel:+8613900139000>"[..])
        );
        // Content-Length 4: the rest of the datagram is not body.
        assert_eq!(request.body, b"v=0\r");
    }

    #[test]
    fn folded_header_lines_belong_to_the_header_above() {
        let message = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bK3\r\n\
            From: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 2 OPTIONS\r\n\r\n";
        let request = parse(message).unwrap();
        assert_eq!(request.vias[0], b"SIP/2.0/UDP h\r\n ;branch=z9hG4bK3");
        assert_eq!(request.method, Method::Options);
    }

    #[test]
    fn malformed_requests_name_their_fault() {
        let cases: [(&[u8], &str); 6] = [
            (b"INVITE sip:x SIP/3.0\r\n\r\n", "version is not SIP/2.0"),
            (b"INVITE sip:x\r\n\r\n", "bad request line"),
            (b"INVITE sip:x SIP/2.0\r\nVia x\r\n\r\n", "header line without a colon"),
            (
                b"INVITE sip:x SIP/2.0\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n",
                "bad CSeq",
            ),
            (
                b"INVITE sip:x SIP/2.0\r\nFrom: a\r\nTo: b\r\nCSeq: 1 INVITE\r\n\r\n",
                "From, To, Call-ID and CSeq are required",
            ),
            (
                b"INVITE sip:x SIP/2.0\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 9\r\n\r\nabc",
                "body shorter than Content-Length",
            ),
        ];
        for (message, reason) in cases {
            assert_eq!(parse(message).unwrap_err(), ParseError::Malformed(reason));
        }
        assert_eq!(
            parse(b"SIP/2.0 200 OK\r\n\r\n").unwrap_err(),
            ParseError::Response
        );
    }

    #[test]
    fn a_refused_request_keeps_what_its_400_needs() {
        let message = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK\r\nFrom: <sip:a@h>;tag=1\r\n\
            To: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 99\r\n\r\ncut";
        assert!(parse(message).is_err());
        let request = salvage(message).unwrap();
        assert_eq!((request.via_count, request.call_id), (1, &b"c"[..]));
        assert!(salvage(
            b"INVITE sip:x SIP/2.0\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
        )
        .is_none());
        assert!(salvage(b"").is_none());
    }

    #[test]
    fn streams_are_framed_by_content_length() {
        let mut stream = INVITE[..INVITE.len() - 1].to_vec();
        stream.extend_from_slice(b"\r\n\r\nACK sip:x SIP/2.0\r\nl: 0\r\n\r\n");
        let first = frame_length(&stream, 4096).unwrap().unwrap();
        assert_eq!(&stream[first - 4..first], b"v=0\r");
        let second = frame_length(&stream[first..], 4096).unwrap().unwrap();
        assert_eq!(first + second, stream.len());
        assert_eq!(frame_length(&stream[..40], 4096), Ok(None));
        assert_eq!(frame_length(&stream, 100), Err(FrameError::TooLarge));
        assert_eq!(
            frame_length(b"ACK sip:x SIP/2.0\r\n\r\n", 4096),
            Err(FrameError::NoLength)
        );
        assert_eq!(frame_length(&[b'A'; 200], 100), Err(FrameError::TooLarge));
    }
}
