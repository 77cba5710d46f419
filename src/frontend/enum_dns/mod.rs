//! ENUM (RFC 6116): the DNS front-end's pure core. A switch asks for the
//! NAPTR records of X's reversed digits under the suffix
//! (`2.1.0.9.8.7.6.5.4.3.2.1.0.0.7.6.8.e164.arpa.` for 700123456789012);
//! the answer is an `E2U+sip` record whose URI names the callee.
//!
//! The pipeline, as the event loop drives it (`server::worker::enum_dns`):
//! 1. `wire::decode` reads the query (or says how to refuse it);
//! 2. `Zone::ask` says what the name is: the apex, a number to look up,
//!    a name that cannot exist, or one outside the zone;
//! 3. a number is looked up by the batch lookup with a caller that is no
//!    party (`settings::never_a_party`): ENUM cannot name the caller, so
//!    only caller-independent bindings answer (AXN; AXE, whose extension
//!    follows X's digits);
//! 4. `write_answer` writes the answer for what the lookup (or step 2)
//!    found, truncated with TC when it exceeds what the transport allows.
//!
//! No allocation per query: the question is copied into a fixed array and
//! answers go into a buffer the caller reuses.

pub mod settings;
pub mod wire;

pub use settings::{EnumConfig, EnumSettings, Zone};
pub use wire::{decode, rcode, rtype, write_fault, Fault, Question};

use crate::binding::{LookupQuery, LookupResult, Reject, Route};
use crate::number::{check_virtual, Number, EXTENSION_DIGITS_MAX, VIRTUAL_DIGITS};

/// Longest number the zone holds: X and an AXE extension.
pub const DIGITS_MAX: usize = VIRTUAL_DIGITS + EXTENSION_DIGITS_MAX;
/// NAPTR order and preference of the answer's one record.
const NAPTR_ORDER: u16 = 100;
const NAPTR_PREFERENCE: u16 = 10;
/// TTL of the apex's NS records, seconds.
const NS_TTL_S: u32 = 3600;
/// SOA timers (refresh, retry, expire), seconds: only a secondary
/// transferring the zone would use them, and x700 offers no transfer.
const SOA_TIMERS_S: [u32; 3] = [3600, 600, 604_800];
/// Answer bytes over TCP: the 2-byte length prefix's limit.
pub const TCP_ANSWER_BYTES_MAX: usize = 65_535;

/// What the name of a question is, in the zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The zone's apex: SOA and NS live here.
    Apex,
    /// A number: look it up. A reject is `NXDOMAIN`, unless `empty_on_reject`
    /// (a legacy X shorter than 15 digits, which may also be the start of
    /// longer numbers): then `NODATA`.
    Number {
        /// The lookup to run.
        query: LookupQuery,
        /// A reject answers NODATA rather than NXDOMAIN.
        empty_on_reject: bool,
    },
    /// A name that exists only as the start of longer numbers (fewer digits
    /// than a number): `NODATA`, so that a resolver minimising its queries
    /// (RFC 9156) goes on down.
    EmptyNonTerminal,
    /// Nothing can exist under this name: `NXDOMAIN`.
    NoSuchName,
    /// Not ours (another zone, another class, a zone transfer): `REFUSED`.
    Refused,
}

/// What the answer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A number that routes: a NAPTR record (for NAPTR and ANY questions).
    Route(Route),
    /// The apex: SOA and NS records.
    Apex,
    /// The name exists, with nothing of this type: the SOA in authority.
    NoData,
    /// No such name: the SOA in authority.
    NoSuchName,
    /// Not answered from this zone.
    Refused,
    /// The lookup could not run now (the node is busy or rate-limits).
    ServerFailure,
}

impl Zone {
    /// What `question`'s name is in this zone.
    pub fn ask(&self, question: &Question) -> Ask {
        if !matches!(question.qclass, wire::class::IN | wire::class::ANY)
            || matches!(question.qtype, rtype::AXFR | rtype::IXFR)
        {
            return Ask::Refused;
        }
        let name = question.name();
        // Label starts, most specific first; a decoded name has at most 128.
        let mut starts = [0u8; 128];
        let mut count = 0;
        let mut at = 0;
        while let Some(&length) = name.get(at) {
            if length == 0 || count == starts.len() {
                break;
            }
            // `at` < 255: the name's length is checked by `decode`.
            starts[count] = u8::try_from(at).unwrap_or(u8::MAX);
            count += 1;
            at += 1 + usize::from(length);
        }
        let Some(prefix_labels) = count.checked_sub(self.suffix_labels) else {
            return Ask::Refused;
        };
        let apex_at = if prefix_labels == count {
            name.len() - 1
        } else {
            usize::from(starts[prefix_labels])
        };
        if !name[apex_at..].eq_ignore_ascii_case(&self.suffix) {
            return Ask::Refused;
        }
        if prefix_labels == 0 {
            return Ask::Apex;
        }
        if prefix_labels > DIGITS_MAX {
            return Ask::NoSuchName;
        }
        // The label next to the apex is the most significant digit.
        let mut digits = [0u8; DIGITS_MAX];
        for (digit, &start) in digits.iter_mut().zip(starts[..prefix_labels].iter().rev()) {
            let start = usize::from(start);
            match name.get(start..start + 2) {
                Some(&[1, d]) if d.is_ascii_digit() => *digit = d,
                _ => return Ask::NoSuchName,
            }
        }
        self.ask_number(&digits[..prefix_labels])
    }

    /// What `digits` (most significant first) name.
    fn ask_number(&self, digits: &[u8]) -> Ask {
        let prefix = crate::number::VIRTUAL_PREFIX.as_bytes();
        let legacy = self.policy.allow_legacy;
        if digits.len() < VIRTUAL_DIGITS {
            let could_start_x = prefix.starts_with(digits) || digits.starts_with(prefix);
            if legacy && digits.len() >= crate::number::REAL_DIGITS_MIN {
                return self.lookup(digits, &[], true);
            }
            return if could_start_x || legacy {
                Ask::EmptyNonTerminal
            } else {
                Ask::NoSuchName
            };
        }
        let (x, extension) = digits.split_at(VIRTUAL_DIGITS);
        self.lookup(x, extension, false)
    }

    fn lookup(&self, x: &[u8], extension: &[u8], empty_on_reject: bool) -> Ask {
        let Ok(x) = check_virtual(Number::from_digits(x), self.policy) else {
            return if empty_on_reject {
                Ask::EmptyNonTerminal
            } else {
                Ask::NoSuchName
            };
        };
        let extension = if extension.is_empty() {
            Number::NONE
        } else {
            Number::extension_key(extension)
        };
        Ask::Number {
            query: LookupQuery {
                caller: self.caller,
                x,
                extension,
            },
            empty_on_reject,
        }
    }

    /// The answer a lookup's result gives (`ask` said `Number`).
    pub fn answer_of(result: Result<LookupResult, u8>, empty_on_reject: bool) -> Answer {
        match result {
            Ok(LookupResult::Route(route)) => Answer::Route(route),
            // A rate limit passes: the resolver may ask again or elsewhere.
            Ok(LookupResult::Reject(Reject::RateLimited)) | Err(_) => Answer::ServerFailure,
            // AXB (`not_a_party`), unbound, expired, refused: no route
            // that holds for every caller, so no such ENUM name.
            Ok(LookupResult::Reject(_)) if empty_on_reject => Answer::NoData,
            Ok(LookupResult::Reject(_)) => Answer::NoSuchName,
        }
    }

    /// The answer to a name `ask` did not send to the table.
    pub fn answer_without_lookup(ask: Ask) -> Answer {
        match ask {
            Ask::Apex => Answer::Apex,
            Ask::EmptyNonTerminal => Answer::NoData,
            Ask::NoSuchName => Answer::NoSuchName,
            Ask::Refused => Answer::Refused,
            Ask::Number { .. } => Answer::ServerFailure,
        }
    }

    /// Largest UDP answer to `question`.
    pub fn udp_answer_bytes_max(&self, question: &Question) -> usize {
        question.udp_answer_bytes_max(self.udp_payload_bytes)
    }

    /// The payload size the node states in its OPT records.
    pub fn udp_payload_bytes(&self) -> u16 {
        self.udp_payload_bytes
    }

    /// Appends the answer to `question` to `out`, at most `bytes_max`
    /// long: past it, the answer is cut to its header and question, with
    /// TC set, so the requester asks again over TCP. Returns the rcode.
    pub fn write_answer(
        &self,
        question: &Question,
        answer: Answer,
        bytes_max: usize,
        out: &mut Vec<u8>,
    ) -> u8 {
        let code = match answer {
            Answer::Route(_) | Answer::Apex | Answer::NoData => rcode::NOERROR,
            Answer::NoSuchName => rcode::NXDOMAIN,
            Answer::Refused => rcode::REFUSED,
            Answer::ServerFailure => rcode::SERVFAIL,
        };
        let authoritative = matches!(
            answer,
            Answer::Route(_) | Answer::Apex | Answer::NoData | Answer::NoSuchName
        );
        let start = out.len();
        wire::push_header(out, question, authoritative, code);
        let after_question = out.len();
        let name_pointer = pointer(0);
        let apex_pointer = pointer(question.name().len().saturating_sub(self.suffix.len()));
        let qtype = question.qtype;
        let mut answers = 0u16;
        let mut authorities = 0u16;
        match answer {
            Answer::Route(route) if matches!(qtype, rtype::NAPTR | rtype::ANY) => {
                self.push_naptr(out, name_pointer, &route);
                answers = 1;
            }
            Answer::Apex if matches!(qtype, rtype::SOA | rtype::NS | rtype::ANY) => {
                if qtype != rtype::NS {
                    self.push_soa(out, apex_pointer);
                    answers += 1;
                }
                if qtype != rtype::SOA {
                    for ns in &self.ns {
                        push_record_head(out, apex_pointer, rtype::NS, NS_TTL_S);
                        push_rdata(out, ns);
                        answers += 1;
                    }
                }
            }
            Answer::Route(_) | Answer::Apex | Answer::NoData | Answer::NoSuchName => {
                self.push_soa(out, apex_pointer);
                authorities = 1;
            }
            Answer::Refused | Answer::ServerFailure => {}
        }
        let additionals = u16::from(question.edns.is_some());
        if let Some(edns) = question.edns {
            wire::push_opt(out, self.udp_payload_bytes, 0, edns.dnssec_ok);
        }
        wire::set_counts(out, start, [answers, authorities, additionals]);
        if out.len() - start > bytes_max {
            out.truncate(after_question);
            if let Some(edns) = question.edns {
                wire::push_opt(out, self.udp_payload_bytes, 0, edns.dnssec_ok);
            }
            wire::set_counts(out, start, [0, 0, additionals]);
            wire::set_truncated(out, start);
        }
        code
    }

    fn push_naptr(&self, out: &mut Vec<u8>, owner: [u8; 2], route: &Route) {
        let ttl_s = self.ttl_s.min(route.expires_in_s);
        push_record_head(out, owner, rtype::NAPTR, ttl_s);
        let length_at = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&NAPTR_ORDER.to_be_bytes());
        out.extend_from_slice(&NAPTR_PREFERENCE.to_be_bytes());
        out.extend_from_slice(b"\x01u");
        out.extend_from_slice(&self.service);
        let regexp_at = out.len();
        out.push(0);
        out.extend_from_slice(b"!^.*$!");
        for piece in &self.template {
            match piece {
                settings::Piece::Literal(bytes) => out.extend_from_slice(bytes),
                settings::Piece::Callee => push_digits(out, route.callee),
                settings::Piece::Display => push_digits(out, route.display),
                settings::Piece::Recording => out.push(if route.recording { b'1' } else { b'0' }),
            }
        }
        out.push(b'!');
        // At most 255: the template's longest expansion is checked at
        // start-up (`settings::parse_template`).
        out[regexp_at] = u8::try_from(out.len() - regexp_at - 1).unwrap_or(u8::MAX);
        // The replacement: the root (the regexp is what counts).
        out.push(0);
        let rdata_bytes = u16::try_from(out.len() - length_at - 2).unwrap_or(u16::MAX);
        out[length_at..length_at + 2].copy_from_slice(&rdata_bytes.to_be_bytes());
    }

    fn push_soa(&self, out: &mut Vec<u8>, owner: [u8; 2]) {
        push_record_head(out, owner, rtype::SOA, self.negative_ttl_s);
        let length_at = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.ns[0]);
        out.extend_from_slice(&self.hostmaster);
        out.extend_from_slice(&self.serial.to_be_bytes());
        for timer_s in SOA_TIMERS_S {
            out.extend_from_slice(&timer_s.to_be_bytes());
        }
        out.extend_from_slice(&self.negative_ttl_s.to_be_bytes());
        let rdata_bytes = u16::try_from(out.len() - length_at - 2).unwrap_or(u16::MAX);
        out[length_at..length_at + 2].copy_from_slice(&rdata_bytes.to_be_bytes());
    }
}

/// A compression pointer to byte `offset` of the question's name.
fn pointer(offset: usize) -> [u8; 2] {
    // The name starts at 12 and is at most 255 bytes: far below 0x3FFF.
    let at = u16::try_from(wire::HEADER_BYTES + offset).unwrap_or(0);
    (0xC000 | at).to_be_bytes()
}

fn push_record_head(out: &mut Vec<u8>, owner: [u8; 2], rtype: u16, ttl_s: u32) {
    out.extend_from_slice(&owner);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&wire::class::IN.to_be_bytes());
    out.extend_from_slice(&ttl_s.to_be_bytes());
}

fn push_rdata(out: &mut Vec<u8>, rdata: &[u8]) {
    // Names are at most 255 bytes.
    out.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(rdata);
}

fn push_digits(out: &mut Vec<u8>, number: Number) {
    out.extend(number.leading_digits().map(|d| b'0' + d));
}

#[cfg(test)]
mod tests;
