//! The `[sip]` configuration: the address (also `sip = "ADDR"` alone, or
//! `--sip ADDR`), the Contact template, where the display number and the
//! recording flag go, the status table, the trusted networks and the size
//! limit. `Settings::from_config` checks it once at start-up.

use crate::binding::Reject;
use crate::server::config::Network;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Default Contact template: the callee at the host the INVITE addressed.
pub const CONTACT_DEFAULT: &str = "sip:{callee}@{host}";
/// Default size limit of one message, bytes (header and body).
pub const MESSAGE_BYTES_DEFAULT: usize = 8192;
/// Smallest and largest size limit accepted.
pub const MESSAGE_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=65_507;
/// Longest Contact template accepted, bytes.
pub const CONTACT_BYTES_MAX: usize = 256;
/// Default Retry-After of a 503, seconds.
pub const RETRY_AFTER_S_DEFAULT: u32 = 5;

/// `[sip.status]`: the SIP status each lookup outcome that refuses a call
/// is answered with (RFC 3261 section 21), one key per `Reject` variant
/// plus `busy` (the node could not look up now: its queues were full).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCodes {
    /// Nothing is bound for X (and extension): 404.
    pub not_bound: u16,
    /// The binding's expiry has passed: 404.
    pub expired: u16,
    /// The binding forbids this direction: 403.
    pub direction_denied: u16,
    /// X is bound, but not for this caller: 403.
    pub not_a_party: u16,
    /// The caller, X or extension is not a number: 484.
    pub bad_number: u16,
    /// The binding's tenant is suspended: 403.
    pub tenant_suspended: u16,
    /// The caller is on a blocklist: 403.
    pub blocked: u16,
    /// The tenant or X is over its lookup rate: 503 with Retry-After.
    pub rate_limited: u16,
    /// The node is overloaded: 503 with Retry-After.
    pub busy: u16,
}

impl Default for StatusCodes {
    fn default() -> StatusCodes {
        StatusCodes {
            not_bound: 404,
            expired: 404,
            direction_denied: 403,
            not_a_party: 403,
            bad_number: 484,
            tenant_suspended: 403,
            blocked: 403,
            rate_limited: 503,
            busy: 503,
        }
    }
}

impl StatusCodes {
    /// The status a reject is answered with.
    pub fn of(&self, reject: Reject) -> u16 {
        match reject {
            Reject::NotBound => self.not_bound,
            Reject::Expired => self.expired,
            Reject::DirectionDenied => self.direction_denied,
            Reject::NotAParty => self.not_a_party,
            Reject::BadNumber => self.bad_number,
            Reject::TenantSuspended => self.tenant_suspended,
            Reject::Blocked => self.blocked,
            Reject::RateLimited => self.rate_limited,
        }
    }

    fn all(&self) -> [(&'static str, u16); 9] {
        [
            ("not_bound", self.not_bound),
            ("expired", self.expired),
            ("direction_denied", self.direction_denied),
            ("not_a_party", self.not_a_party),
            ("bad_number", self.bad_number),
            ("tenant_suspended", self.tenant_suspended),
            ("blocked", self.blocked),
            ("rate_limited", self.rate_limited),
            ("busy", self.busy),
        ]
    }
}

/// The `[sip]` table (or `sip = "ADDR"`, the address alone).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP address (none: no SIP front-end).
    pub listen: Option<String>,
    /// The Contact URI of a 302: `{callee}`, `{display}` and `{host}` (the
    /// Request-URI's host) are filled in.
    pub contact: String,
    /// Where the display number and the recording flag go: `"uri"`
    /// (parameters of the Contact URI) or `"header"` (X700-Display and
    /// X700-Recording headers).
    pub route_info: String,
    /// Networks whose P-Asserted-Identity names the caller (CIDR).
    pub trusted_networks: Vec<String>,
    /// Retry-After of every 503, seconds (0: none).
    pub retry_after_s: u32,
    /// Largest message accepted, bytes; larger ones are refused.
    pub message_bytes_max: usize,
    /// The status table.
    pub status: StatusCodes,
}

impl Default for SipConfig {
    fn default() -> SipConfig {
        SipConfig {
            listen: None,
            contact: CONTACT_DEFAULT.to_string(),
            route_info: "uri".to_string(),
            trusted_networks: Vec::new(),
            retry_after_s: RETRY_AFTER_S_DEFAULT,
            message_bytes_max: MESSAGE_BYTES_DEFAULT,
            status: StatusCodes::default(),
        }
    }
}

/// `sip` in the configuration file is either the address or the table.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SipConfig, D::Error> {
    struct Either;
    impl<'de> Visitor<'de> for Either {
        type Value = SipConfig;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an address (\"127.0.0.1:5060\") or a [sip] table")
        }
        fn visit_str<E: de::Error>(self, address: &str) -> Result<SipConfig, E> {
            Ok(SipConfig {
                listen: Some(address.to_string()),
                ..SipConfig::default()
            })
        }
        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<SipConfig, M::Error> {
            SipConfig::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_any(Either)
}

/// Where a route's display number and recording flag go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteInfo {
    /// `;x700-display=X;x700-recording=0|1` on the Contact URI.
    Uri,
    /// `X700-Display: X` and `X700-Recording: 0|1` headers.
    Header,
}

/// A piece of the Contact template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Copied as it is.
    Text(Vec<u8>),
    /// The callee's digits.
    Callee,
    /// The display number's digits.
    Display,
    /// The Request-URI's host.
    Host,
}

/// The checked `[sip]` settings the event loops use.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Contact template, in pieces.
    pub contact: Vec<Piece>,
    /// Where display and recording go.
    pub route_info: RouteInfo,
    /// The status table.
    pub status: StatusCodes,
    /// Retry-After of a 503 (0: none).
    pub retry_after_s: u32,
    /// Sources whose P-Asserted-Identity is believed.
    pub trusted_networks: Vec<Network>,
    /// Largest message, bytes.
    pub message_bytes_max: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        // The defaults are valid: checked by a unit test.
        Settings::from_config(&SipConfig::default()).unwrap_or_else(|_| unreachable!())
    }
}

impl Settings {
    /// Checks a configuration; the error says which key is wrong and why.
    pub fn from_config(config: &SipConfig) -> Result<Settings, String> {
        let route_info = match config.route_info.as_str() {
            "uri" => RouteInfo::Uri,
            "header" => RouteInfo::Header,
            other => {
                return Err(format!(
                    "sip.route_info {other:?}: expected \"uri\" or \"header\""
                ))
            }
        };
        for (key, code) in config.status.all() {
            if !(400..=699).contains(&code) {
                return Err(format!(
                    "sip.status.{key} = {code}: a refused call is answered 400 to 699"
                ));
            }
        }
        if !MESSAGE_BYTES_RANGE.contains(&config.message_bytes_max) {
            return Err(format!(
                "sip.message_bytes_max must be {} to {}",
                MESSAGE_BYTES_RANGE.start(),
                MESSAGE_BYTES_RANGE.end()
            ));
        }
        let trusted_networks = config
            .trusted_networks
            .iter()
            .map(|n| Network::parse(n).map_err(|e| format!("sip.trusted_networks: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Settings {
            contact: template(&config.contact)?,
            route_info,
            status: config.status,
            retry_after_s: config.retry_after_s,
            trusted_networks,
            message_bytes_max: config.message_bytes_max,
        })
    }
}

/// Splits a Contact template into pieces, checking that it is a `sip:`,
/// `sips:` or `tel:` URI naming `{callee}`, with nothing a header line
/// cannot hold and no `?` (parameters are appended at its end).
fn template(text: &str) -> Result<Vec<Piece>, String> {
    let bad = |why: &str| Err(format!("sip.contact {text:?}: {why}"));
    if text.len() > CONTACT_BYTES_MAX {
        return bad("longer than 256 bytes");
    }
    let lower = text.to_ascii_lowercase();
    if !["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        return bad("must begin sip:, sips: or tel:");
    }
    if text
        .bytes()
        .any(|b| !b.is_ascii_graphic() || b"<>?\"".contains(&b))
    {
        return bad("spaces, control characters, <, >, \" and ? are not allowed");
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest.as_bytes()[..open].to_vec()));
        }
        let Some(close) = rest[open..].find('}') else {
            return bad("a { without its }");
        };
        pieces.push(match &rest[open + 1..open + close] {
            "callee" => Piece::Callee,
            "display" => Piece::Display,
            "host" => Piece::Host,
            other => return bad(&format!("unknown placeholder {{{other}}}")),
        });
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return bad("a } without its {");
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.as_bytes().to_vec()));
    }
    if !pieces.contains(&Piece::Callee) {
        return bad("must name {callee}");
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let settings = Settings::default();
        assert_eq!(settings.route_info, RouteInfo::Uri);
        assert_eq!(
            settings.contact,
            [
                Piece::Text(b"sip:".to_vec()),
                Piece::Callee,
                Piece::Text(b"@".to_vec()),
                Piece::Host
            ]
        );
        assert_eq!(settings.status.of(Reject::BadNumber), 484);
    }

    #[test]
    fn sip_is_an_address_or_a_table() {
        #[derive(Deserialize)]
        struct Top {
            #[serde(deserialize_with = "deserialize")]
            sip: SipConfig,
        }
        let short: Top = toml::from_str("sip = \"127.0.0.1:5060\"").unwrap();
        assert_eq!(short.sip.listen.as_deref(), Some("127.0.0.1:5060"));
        let table: Top = toml::from_str(
            "[sip]\nlisten = \"127.0.0.1:5060\"\ncontact = \"sip:{callee}@gw\"\n[sip.status]\nnot_bound = 480\n",
        )
        .unwrap();
        assert_eq!(table.sip.status.not_bound, 480);
        assert_eq!(table.sip.status.busy, 503);
        assert!(toml::from_str::<Top>("[sip]\nlisen = \"x\"\n").is_err());
    }

    #[test]
    fn the_node_configuration_takes_either_form() {
        use crate::server::config::Config;
        let short: Config = toml::from_str("sip = \"127.0.0.1:5060\"\n").unwrap();
        assert_eq!(
            short.validate().unwrap().sip,
            Some("127.0.0.1:5060".parse().unwrap())
        );
        let table: Config =
            toml::from_str("[sip]\nlisten = \"127.0.0.1:5061\"\nretry_after_s = 0\n").unwrap();
        assert_eq!(
            table.validate().unwrap().sip,
            Some("127.0.0.1:5061".parse().unwrap())
        );
        assert_eq!(Config::default().validate().unwrap().sip, None);
        let bad: Config = toml::from_str("[sip]\ncontact = \"sip:gw\"\n").unwrap();
        assert!(bad.validate().is_err(), "a bad [sip] table stops the start");
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        let check = |config: SipConfig| Settings::from_config(&config).unwrap_err();
        let base = SipConfig::default;
        assert!(check(SipConfig {
            contact: "sip:gw".into(),
            ..base()
        })
        .contains("{callee}"));
        assert!(check(SipConfig {
            contact: "http://{callee}".into(),
            ..base()
        })
        .contains("sip:"));
        assert!(check(SipConfig {
            contact: "sip:{callee}@gw?x=1".into(),
            ..base()
        })
        .contains("?"));
        assert!(check(SipConfig {
            contact: "sip:{calle}@gw".into(),
            ..base()
        })
        .contains("unknown"));
        assert!(check(SipConfig {
            route_info: "body".into(),
            ..base()
        })
        .contains("route_info"));
        let status = StatusCodes {
            expired: 302,
            ..StatusCodes::default()
        };
        assert!(check(SipConfig { status, ..base() }).contains("sip.status.expired"));
        assert!(check(SipConfig {
            message_bytes_max: 10,
            ..base()
        })
        .contains("message_bytes_max"));
        let trusted_networks = vec!["10.0.0.0/99".into()];
        assert!(check(SipConfig {
            trusted_networks,
            ..base()
        })
        .contains("trusted_networks"));
    }
}
