//! DNS messages (RFC 1035, EDNS RFC 6891): the one-question query a
//! switch or resolver sends, decoded without allocation, and the answer,
//! written into a reused buffer.
//!
//! Only what an authoritative ENUM server needs is read: the header, one
//! question (no compression pointers, which RFC 1035 allows but no
//! client puts in a question), and at most one additional record, an OPT.
//! Anything else is `FORMERR`; an opcode other than QUERY is `NOTIMP`; a
//! message with QR set (a response) or shorter than a header is ignored,
//! so two servers can never answer each other forever.

/// Bytes of the DNS header.
pub const HEADER_BYTES: usize = 12;
/// Largest UDP answer to a query without EDNS (RFC 1035).
pub const UDP_PLAIN_BYTES: usize = 512;
/// Largest query read: a question is at most 12 + 255 + 4 bytes, and an
/// OPT with a few options (a cookie is 28 bytes) fits easily. A longer
/// query is `FORMERR` over UDP and closes a TCP connection.
pub const QUERY_BYTES_MAX: usize = 1024;
/// Largest question: a 255-byte name, type and class.
const QUESTION_BYTES_MAX: usize = 255 + 4;

/// Response codes (RFC 1035, 6891).
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// The query is malformed.
    pub const FORMERR: u8 = 1;
    /// The server could not answer now.
    pub const SERVFAIL: u8 = 2;
    /// The name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// The opcode is not implemented.
    pub const NOTIMP: u8 = 4;
    /// The server will not answer this.
    pub const REFUSED: u8 = 5;
    /// Extended rcode 16: an EDNS version other than 0.
    pub const BADVERS: u8 = 16;

    /// The name `/metrics` labels a code with.
    pub fn name(code: u8) -> &'static str {
        match code {
            NOERROR => "NOERROR",
            FORMERR => "FORMERR",
            SERVFAIL => "SERVFAIL",
            NXDOMAIN => "NXDOMAIN",
            NOTIMP => "NOTIMP",
            REFUSED => "REFUSED",
            BADVERS => "BADVERS",
            _ => "other",
        }
    }
}

/// Record types the zone knows.
pub mod rtype {
    /// Name server.
    pub const NS: u16 = 2;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Naming authority pointer (RFC 3403).
    pub const NAPTR: u16 = 35;
    /// EDNS pseudo-record.
    pub const OPT: u16 = 41;
    /// Incremental zone transfer.
    pub const IXFR: u16 = 251;
    /// Zone transfer.
    pub const AXFR: u16 = 252;
    /// Any type (`ANY`).
    pub const ANY: u16 = 255;
}

/// Classes.
pub mod class {
    /// Internet.
    pub const IN: u16 = 1;
    /// Any class.
    pub const ANY: u16 = 255;
}

/// What a query's OPT record said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The requester's UDP payload size.
    pub udp_payload_bytes: u16,
    /// DNSSEC OK: copied into the answer's OPT (RFC 3225).
    pub dnssec_ok: bool,
}

/// A decoded query: the header fields an answer echoes and the question,
/// kept as it arrived (its case included: RFC 4343).
#[derive(Clone, Copy)]
pub struct Question {
    /// Message id.
    pub id: u16,
    /// Recursion desired: echoed.
    pub recursion_desired: bool,
    /// Checking disabled: echoed.
    pub checking_disabled: bool,
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
    /// The query's OPT, if any.
    pub edns: Option<Edns>,
    /// Name, type and class as received.
    bytes: [u8; QUESTION_BYTES_MAX],
    /// Bytes of the name (in `bytes`).
    name_bytes: u16,
}

impl std::fmt::Debug for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Question")
            .field("id", &self.id)
            .field("name", &self.name())
            .field("qtype", &self.qtype)
            .field("edns", &self.edns)
            .finish_non_exhaustive()
    }
}

impl Question {
    /// The question's name in wire form.
    pub fn name(&self) -> &[u8] {
        &self.bytes[..usize::from(self.name_bytes)]
    }

    /// Name, type and class, as received.
    fn section(&self) -> &[u8] {
        &self.bytes[..usize::from(self.name_bytes) + 4]
    }

    /// Largest answer over UDP: 512 bytes without EDNS, else the
    /// requester's payload size bounded by the zone's.
    pub fn udp_answer_bytes_max(&self, zone_payload_bytes: u16) -> usize {
        match self.edns {
            None => UDP_PLAIN_BYTES,
            Some(edns) => usize::from(
                edns.udp_payload_bytes
                    .clamp(512, zone_payload_bytes.max(512)),
            ),
        }
    }
}

/// A query that gets no ordinary answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Send nothing: a response, or too short to carry an id.
    Ignore,
    /// Answer a bare header with this rcode (`FORMERR`, `NOTIMP`), or
    /// `BADVERS` with an OPT.
    Answer {
        /// The query's id.
        id: u16,
        /// The query's second header word, for its opcode and RD bit.
        flags: u16,
        /// The answer's code.
        rcode: u8,
    },
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// Decodes a query. Never panics, whatever the bytes.
pub fn decode(message: &[u8]) -> Result<Question, Fault> {
    let (Some(id), Some(flags)) = (u16_at(message, 0), u16_at(message, 2)) else {
        return Err(Fault::Ignore);
    };
    if message.len() < HEADER_BYTES || flags & 0x8000 != 0 {
        return Err(Fault::Ignore);
    }
    let fault = |rcode| Fault::Answer { id, flags, rcode };
    if (flags >> 11) & 0xF != 0 {
        return Err(fault(rcode::NOTIMP));
    }
    let counts = [4, 6, 8, 10].map(|at| u16_at(message, at).unwrap_or(0));
    let [questions, answers, authorities, additionals] = counts;
    if message.len() > QUERY_BYTES_MAX
        || questions != 1
        || answers != 0
        || authorities != 0
        || additionals > 1
    {
        return Err(fault(rcode::FORMERR));
    }
    let formerr = fault(rcode::FORMERR);
    let mut at = HEADER_BYTES;
    loop {
        let length = usize::from(*message.get(at).ok_or(formerr)?);
        if length & 0xC0 != 0 {
            return Err(formerr);
        }
        at += 1 + length;
        if at - HEADER_BYTES > 255 {
            return Err(formerr);
        }
        if length == 0 {
            break;
        }
    }
    let name_bytes = at - HEADER_BYTES;
    let qtype = u16_at(message, at).ok_or(formerr)?;
    let qclass = u16_at(message, at + 2).ok_or(formerr)?;
    let mut bytes = [0u8; QUESTION_BYTES_MAX];
    bytes[..name_bytes + 4].copy_from_slice(&message[HEADER_BYTES..at + 4]);
    at += 4;
    let mut edns = None;
    if additionals == 1 {
        // The OPT: owner the root, type 41, class the payload size, TTL
        // the extended rcode, version and flags, then its options.
        let opt = message.get(at..at + 11).ok_or(formerr)?;
        let rdata_bytes = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != rtype::OPT {
            return Err(formerr);
        }
        if opt[6] != 0 {
            return Err(fault(rcode::BADVERS));
        }
        at += 11 + rdata_bytes;
        edns = Some(Edns {
            udp_payload_bytes: u16::from_be_bytes([opt[3], opt[4]]),
            dnssec_ok: opt[7] & 0x80 != 0,
        });
    }
    if at != message.len() {
        return Err(formerr);
    }
    Ok(Question {
        id,
        recursion_desired: flags & 0x0100 != 0,
        checking_disabled: flags & 0x0010 != 0,
        qtype,
        qclass,
        edns,
        bytes,
        // At most 255: checked above.
        name_bytes: u16::try_from(name_bytes).unwrap_or(0),
    })
}

/// Writes the answer to a query that failed to decode (`Fault::Answer`):
/// a header alone, or with an OPT for `BADVERS`. Returns the rcode.
pub fn write_fault(id: u16, flags: u16, code: u8, payload_bytes: u16, out: &mut Vec<u8>) -> u8 {
    let high = 0x80 | (((flags >> 8) as u8) & 0x79);
    let low = if code == rcode::BADVERS {
        0
    } else {
        code & 0xF
    };
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[high, low]);
    let additionals: u16 = u16::from(code == rcode::BADVERS);
    for count in [0, 0, 0, additionals] {
        out.extend_from_slice(&u16::to_be_bytes(count));
    }
    if code == rcode::BADVERS {
        push_opt(out, payload_bytes, 1, false);
    }
    code
}

/// Appends an OPT record: our payload size, the upper bits of the rcode.
pub(super) fn push_opt(out: &mut Vec<u8>, payload_bytes: u16, extended_rcode: u8, dnssec_ok: bool) {
    out.push(0);
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&payload_bytes.to_be_bytes());
    out.extend_from_slice(&[extended_rcode, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
    out.extend_from_slice(&[0, 0]);
}

/// Writes the header and the question of an answer; the counts are set
/// by `set_counts` once the sections are written.
pub(super) fn push_header(out: &mut Vec<u8>, question: &Question, authoritative: bool, code: u8) {
    out.extend_from_slice(&question.id.to_be_bytes());
    let high = 0x80 | if authoritative { 0x04 } else { 0 } | u8::from(question.recursion_desired);
    let low = if question.checking_disabled { 0x10 } else { 0 } | (code & 0xF);
    out.extend_from_slice(&[high, low]);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(question.section());
}

/// Sets the answer, authority and additional counts of the message that
/// begins at `start`.
pub(super) fn set_counts(out: &mut [u8], start: usize, counts: [u16; 3]) {
    for (i, count) in counts.into_iter().enumerate() {
        let at = start + 6 + 2 * i;
        out[at..at + 2].copy_from_slice(&count.to_be_bytes());
    }
}

/// Sets TC in the message that begins at `start`.
pub(super) fn set_truncated(out: &mut [u8], start: usize) {
    out[start + 2] |= 0x02;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (dotted) of type `qtype`, with an OPT of
    /// `payload` bytes if given.
    pub(crate) fn query(id: u16, name: &str, qtype: u16, payload: Option<u16>) -> Vec<u8> {
        let mut message = id.to_be_bytes().to_vec();
        message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(payload.is_some())]);
        message.extend(super::super::settings::wire_name(name).unwrap());
        message.extend_from_slice(&qtype.to_be_bytes());
        message.extend_from_slice(&class::IN.to_be_bytes());
        if let Some(payload) = payload {
            push_opt(&mut message, payload, 0, false);
        }
        message
    }

    #[test]
    fn a_query_decodes_with_its_name_and_edns() {
        let question = decode(&query(7, "2.1.6.8.e164.arpa.", rtype::NAPTR, Some(4096))).unwrap();
        assert_eq!(question.id, 7);
        assert!(question.recursion_desired);
        assert_eq!(question.qtype, rtype::NAPTR);
        assert_eq!(question.name(), b"\x012\x011\x016\x018\x04e164\x04arpa\x00");
        assert_eq!(question.edns.unwrap().udp_payload_bytes, 4096);
        assert_eq!(question.udp_answer_bytes_max(1232), 1232);
        let plain = decode(&query(7, "6.8.e164.arpa.", rtype::SOA, None)).unwrap();
        assert_eq!(plain.udp_answer_bytes_max(1232), 512);
    }

    #[test]
    fn malformed_queries_are_formerr_responses_ignored_other_opcodes_notimp() {
        let good = query(9, "6.8.e164.arpa.", rtype::SOA, None);
        assert_eq!(decode(&good[..11]).unwrap_err(), Fault::Ignore);
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(decode(&response).unwrap_err(), Fault::Ignore);
        let formerr = |bytes: &[u8]| {
            matches!(
                decode(bytes),
                Err(Fault::Answer {
                    rcode: rcode::FORMERR,
                    id: 9,
                    ..
                })
            )
        };
        assert!(formerr(&good[..good.len() - 1]), "cut short");
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(formerr(&trailing), "trailing byte");
        let mut two = good.clone();
        two[5] = 2;
        assert!(formerr(&two), "two questions");
        let mut pointer = good.clone();
        pointer[12] = 0xC0;
        assert!(formerr(&pointer), "compression pointer");
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        assert!(matches!(
            decode(&notify),
            Err(Fault::Answer {
                rcode: rcode::NOTIMP,
                ..
            })
        ));
        let mut version = query(9, "6.8.e164.arpa.", rtype::SOA, Some(1232));
        let opt_version = version.len() - 5;
        version[opt_version] = 1;
        assert!(matches!(
            decode(&version),
            Err(Fault::Answer {
                rcode: rcode::BADVERS,
                ..
            })
        ));
    }

    #[test]
    fn a_fault_answers_a_bare_header_with_the_id_and_opcode() {
        let mut out = Vec::new();
        write_fault(0xBEEF, 0x0100, rcode::FORMERR, 1232, &mut out);
        assert_eq!(out, [0xBE, 0xEF, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.clear();
        write_fault(1, 0, rcode::BADVERS, 1232, &mut out);
        assert_eq!(&out[2..4], [0x80, 0x00]);
        assert_eq!(out[11], 1);
        assert_eq!(out[12 + 5], 1, "extended rcode 1: BADVERS");
    }
}
