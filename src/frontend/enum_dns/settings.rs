//! The `[enum]` table of the configuration and the zone it describes,
//! checked once at start-up into wire-ready bytes (`Zone`), so that
//! answering a query only copies.

use crate::number::{Number, XPolicy};
use serde::Deserialize;

/// Default ENUM suffix: China's country code, 86, under `e164.arpa.`.
pub const SUFFIX_DEFAULT: &str = "6.8.e164.arpa.";
/// Default URI template of the NAPTR records.
pub const TEMPLATE_DEFAULT: &str = "sip:{callee}@{host}";
/// Default host the template names.
pub const HOST_DEFAULT: &str = "localhost";
/// Default name server of the zone (the SOA's MNAME too).
pub const NS_DEFAULT: &str = "localhost.";
/// Default mailbox of the SOA.
pub const HOSTMASTER_DEFAULT: &str = "hostmaster.localhost.";
/// Default ENUM service of the NAPTR records (RFC 6116, RFC 3764).
pub const SERVICE_DEFAULT: &str = "E2U+sip";
/// Default EDNS UDP payload the node answers up to (the DNS Flag Day 2020
/// figure: no IP fragmentation on any common path).
pub const UDP_PAYLOAD_BYTES_DEFAULT: u16 = 1232;
/// Most name servers the zone may list.
pub const NS_MAX: usize = 16;
/// A NAPTR regexp is one character-string: at most 255 bytes, of which the
/// `!^.*$!` ... `!` frame takes 7.
const REGEXP_REPLACEMENT_BYTES_MAX: usize = 255 - 7;

/// `enum = "ADDR"`, or an `[enum]` table. TOML cannot hold a key and a
/// table of the same name, so the table names the address as `listen`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum EnumConfig {
    /// Just the address: every other key at its default.
    Address(String),
    /// The address and the zone's keys.
    Table(EnumSettings),
}

impl EnumConfig {
    /// The settings, defaults filled in.
    pub fn settings(&self) -> EnumSettings {
        match self {
            EnumConfig::Address(listen) => EnumSettings {
                listen: Some(listen.clone()),
                ..EnumSettings::default()
            },
            EnumConfig::Table(settings) => settings.clone(),
        }
    }
}

/// The `[enum]` keys.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EnumSettings {
    /// UDP and TCP address of the ENUM front-end (`--enum`).
    pub listen: Option<String>,
    /// The zone's apex: numbers are its reversed digits under it.
    pub suffix: String,
    /// URI of the NAPTR records: `{callee}`, `{display}`, `{recording}`
    /// (`0` or `1`) and `{host}` are replaced.
    pub template: String,
    /// What `{host}` stands for.
    pub host: String,
    /// The NAPTR records' service field.
    pub service: String,
    /// TTL of the NAPTR answers, seconds (never beyond the binding's
    /// remaining life).
    pub ttl_s: u32,
    /// TTL of negative answers (the SOA's TTL and MINIMUM), seconds.
    pub negative_ttl_s: u32,
    /// The zone's name servers (NS records at the apex; the first is the
    /// SOA's MNAME).
    pub ns: Vec<String>,
    /// The SOA's RNAME (the hostmaster's mailbox as a name).
    pub hostmaster: String,
    /// The SOA's serial.
    pub serial: u32,
    /// Largest UDP answer, bytes, when the query carries EDNS (a query
    /// without EDNS gets at most 512).
    pub udp_payload_bytes: u16,
}

impl Default for EnumSettings {
    fn default() -> EnumSettings {
        EnumSettings {
            listen: None,
            suffix: SUFFIX_DEFAULT.into(),
            template: TEMPLATE_DEFAULT.into(),
            host: HOST_DEFAULT.into(),
            service: SERVICE_DEFAULT.into(),
            ttl_s: 0,
            negative_ttl_s: 0,
            ns: vec![NS_DEFAULT.into()],
            hostmaster: HOSTMASTER_DEFAULT.into(),
            serial: 1,
            udp_payload_bytes: UDP_PAYLOAD_BYTES_DEFAULT,
        }
    }
}

/// One piece of the NAPTR URI template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Piece {
    /// Bytes copied as they are (`{host}` is already in them).
    Literal(Vec<u8>),
    /// The callee's digits.
    Callee,
    /// The display number's digits (X).
    Display,
    /// `1` if the call is recorded, else `0`.
    Recording,
}

/// The zone, ready to answer from.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The apex in wire form, lower case.
    pub(super) suffix: Vec<u8>,
    /// Labels of the apex.
    pub(super) suffix_labels: usize,
    /// NS names, wire form.
    pub(super) ns: Vec<Vec<u8>>,
    /// SOA RNAME, wire form.
    pub(super) hostmaster: Vec<u8>,
    pub(super) serial: u32,
    pub(super) ttl_s: u32,
    pub(super) negative_ttl_s: u32,
    /// The service as a character-string (length byte first).
    pub(super) service: Vec<u8>,
    pub(super) template: Vec<Piece>,
    pub(super) udp_payload_bytes: u16,
    /// Which X the table accepts.
    pub(super) policy: XPolicy,
    /// The caller of every ENUM lookup: a number that is never a party.
    pub(super) caller: Number,
}

/// Encodes a dotted name (`a.b.c.`, the final dot optional) in wire form,
/// lower case. Labels are letters, digits, `-` and `_`, 1 to 63 bytes; the
/// whole name at most 255 bytes.
pub fn wire_name(text: &str) -> Result<Vec<u8>, String> {
    let trimmed = text.strip_suffix('.').unwrap_or(text);
    let mut wire = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            let ok = (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(format!("{text:?} is not a domain name"));
            }
            // 1 to 63: fits u8.
            wire.push(u8::try_from(label.len()).unwrap_or(0));
            wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    wire.push(0);
    if wire.len() > 255 {
        return Err(format!("{text:?} is longer than 255 bytes"));
    }
    Ok(wire)
}

impl EnumSettings {
    /// Checks every key and builds the zone.
    pub fn zone(&self, policy: XPolicy) -> Result<Zone, String> {
        let suffix = wire_name(&self.suffix).map_err(|e| format!("enum.suffix: {e}"))?;
        // A number of up to 19 digits (15 and a 4-digit extension) takes
        // 38 bytes in front of the suffix.
        if suffix.len() > 255 - 38 {
            return Err("enum.suffix: too long to hold a number of 19 digits".into());
        }
        let suffix_labels = labels(&suffix);
        if self.ns.is_empty() || self.ns.len() > NS_MAX {
            return Err(format!("enum.ns: 1 to {NS_MAX} names"));
        }
        let ns = self
            .ns
            .iter()
            .map(|n| wire_name(n).map_err(|e| format!("enum.ns: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let hostmaster =
            wire_name(&self.hostmaster).map_err(|e| format!("enum.hostmaster: {e}"))?;
        if self.service.is_empty()
            || self.service.len() > 32
            || !self.service.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("enum.service: 1 to 32 printable characters, such as E2U+sip".into());
        }
        let mut service = vec![u8::try_from(self.service.len()).unwrap_or(0)];
        service.extend_from_slice(self.service.as_bytes());
        let template = parse_template(&self.template, &self.host)?;
        if self.udp_payload_bytes < 512 {
            return Err("enum.udp_payload_bytes must be at least 512".into());
        }
        Ok(Zone {
            suffix,
            suffix_labels,
            ns,
            hostmaster,
            serial: self.serial,
            ttl_s: self.ttl_s,
            negative_ttl_s: self.negative_ttl_s,
            service,
            template,
            udp_payload_bytes: self.udp_payload_bytes,
            policy,
            caller: never_a_party(),
        })
    }
}

/// The caller every ENUM lookup names: 110, the police's emergency number,
/// which `check_real` refuses as A, B or a default callee (`number::
/// RESERVED_RANGES`), so it is never a party of any binding, nor on any
/// blocklist (a block names a real number: `tenant::registry`). Asked with
/// it, the table answers exactly the caller-independent bindings: an AXN
/// routes to its owner, an AXE extension to its owner, and an AXB X says
/// `not_a_party` (`table::route`).
pub fn never_a_party() -> Number {
    Number::from_digits(b"110")
}

fn labels(wire: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while let Some(&length) = wire.get(at) {
        if length == 0 {
            break;
        }
        count += 1;
        at += 1 + usize::from(length);
    }
    count
}

/// Splits the template into pieces; `{host}` is replaced now.
fn parse_template(template: &str, host: &str) -> Result<Vec<Piece>, String> {
    let bad = |why: &str| format!("enum.template {template:?}: {why}");
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic() && b != b'!') {
        return Err(format!("enum.host {host:?}: printable, without '!'"));
    }
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let mut rest = template;
    // Longest expansion: every placeholder at 15 digits.
    let mut expanded = 0;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('{') {
            let Some((name, tail)) = after.split_once('}') else {
                return Err(bad("an unclosed '{'"));
            };
            let piece = match name {
                "host" => {
                    literal.extend_from_slice(host.as_bytes());
                    expanded += host.len();
                    None
                }
                "callee" => Some(Piece::Callee),
                "display" => Some(Piece::Display),
                "recording" => Some(Piece::Recording),
                _ => {
                    return Err(bad(
                        "placeholders are {callee}, {display}, {recording}, {host}",
                    ))
                }
            };
            if let Some(piece) = piece {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                expanded += crate::number::DIGITS_MAX;
                pieces.push(piece);
            }
            rest = tail;
            continue;
        }
        let Some(c) = rest.chars().next() else {
            break;
        };
        if !c.is_ascii_graphic() || c == '!' || c == '\\' || c == '}' {
            return Err(bad("printable ASCII without '!', '\\' or a stray '}'"));
        }
        literal.push(c as u8);
        expanded += 1;
        rest = &rest[1..];
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    if pieces.is_empty() {
        return Err(bad("empty"));
    }
    if expanded > REGEXP_REPLACEMENT_BYTES_MAX {
        return Err(bad(&format!(
            "expands to more than {REGEXP_REPLACEMENT_BYTES_MAX} bytes"
        )));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_in_lower_case_and_bad_ones_are_refused() {
        assert_eq!(
            wire_name("6.8.E164.arpa.").unwrap(),
            b"\x016\x018\x04e164\x04arpa\x00"
        );
        assert_eq!(
            wire_name("6.8.e164.arpa").unwrap(),
            wire_name("6.8.e164.arpa.").unwrap()
        );
        assert_eq!(wire_name(".").unwrap(), b"\x00");
        assert!(wire_name("a..b").is_err());
        assert!(wire_name("a b.c").is_err());
        assert!(wire_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn the_template_splits_into_pieces_with_the_host_filled_in() {
        let pieces = parse_template("sip:{callee}@{host};d={display}", "sbc.example").unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Literal(b"sip:".to_vec()),
                Piece::Callee,
                Piece::Literal(b"@sbc.example;d=".to_vec()),
                Piece::Display,
            ]
        );
        assert!(parse_template("sip:{caller}@{host}", "h").is_err());
        assert!(parse_template("sip:{callee", "h").is_err());
        assert!(parse_template("sip:!{callee}", "h").is_err());
        assert!(parse_template(&format!("sip:{{callee}}@{}", "h".repeat(240)), "h").is_err());
    }

    #[test]
    fn an_address_alone_takes_every_default() {
        let config: EnumConfig = toml::from_str::<toml::Value>("enum = \"127.0.0.1:5353\"")
            .unwrap()
            .get("enum")
            .cloned()
            .unwrap()
            .try_into()
            .unwrap();
        let settings = config.settings();
        assert_eq!(settings.listen.as_deref(), Some("127.0.0.1:5353"));
        assert_eq!(settings.suffix, SUFFIX_DEFAULT);
        let zone = settings.zone(XPolicy::default()).unwrap();
        assert_eq!(zone.suffix_labels, 4);
    }
}
