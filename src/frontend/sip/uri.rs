//! The numbers in SIP URIs: `sip:`/`sips:` URIs with a user part (with or
//! without `user=phone`) and `tel:` URIs (RFC 3966), in a name-addr
//! (`"Name" <sip:...>;tag=...`) or a bare addr-spec. Numbers go through
//! `crate::number`, so `+86`, `0086` and `86` before a mobile or a 700
//! number are removed as everywhere else.
//!
//! Spelling rules:
//! - the user part ends at `@`; its own parameters (`;npdi`, a
//!   `;phone-context=...`) are dropped;
//! - the visual separators of RFC 3966 (`-`, `.`, `(`, `)`) are removed from
//!   a `tel:` number and from the user of a `user=phone` URI; any other
//!   user must be digits with an optional leading `+`;
//! - an X followed by one to four more digits (`700123456789012` `0123`) is
//!   X and an AXE extension, when the leading fifteen digits are a 700
//!   number.

use crate::binding::LookupQuery;
use crate::number::{self, Number, XPolicy};

/// Longest number spelling read from a URI: `+0086`, fifteen digits and
/// separators, with room to spare; a longer one is not a number.
const SPELLING_BYTES_MAX: usize = 40;

/// The URI inside a header value: between `<` and `>` in a name-addr, else
/// up to the first `;` (header parameters) or white space.
pub fn uri_of(value: &[u8]) -> &[u8] {
    if let Some(open) = value.iter().position(|&b| b == b'<') {
        let rest = &value[open + 1..];
        let close = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
        return rest[..close].trim_ascii();
    }
    let value = value.trim_ascii();
    let end = value
        .iter()
        .position(|&b| b == b';' || b.is_ascii_whitespace())
        .unwrap_or(value.len());
    &value[..end]
}

/// The parts of a URI x700 reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriParts<'a> {
    /// The number as spelled (user part without its parameters, or the
    /// `tel:` number).
    pub user: &'a [u8],
    /// The host (and port) of a `sip:`/`sips:` URI; empty for `tel:`.
    pub host: &'a [u8],
    /// A telephone number by its scheme or `user=phone`: visual separators
    /// are allowed.
    pub phone: bool,
}

/// Splits a `sip:`, `sips:` or `tel:` URI; `None` for another scheme or a
/// URI without a user.
pub fn parts(uri: &[u8]) -> Option<UriParts<'_>> {
    let colon = uri.iter().position(|&b| b == b':')?;
    let (scheme, rest) = (&uri[..colon], &uri[colon + 1..]);
    if scheme.eq_ignore_ascii_case(b"tel") {
        let end = rest
            .iter()
            .position(|&b| b == b';' || b == b'?')
            .unwrap_or(rest.len());
        return Some(UriParts {
            user: &rest[..end],
            host: &[],
            phone: true,
        });
    }
    if !scheme.eq_ignore_ascii_case(b"sip") && !scheme.eq_ignore_ascii_case(b"sips") {
        return None;
    }
    let at = rest.iter().rposition(|&b| b == b'@')?;
    let userinfo = &rest[..at];
    let user_end = userinfo
        .iter()
        .position(|&b| b == b';' || b == b':')
        .unwrap_or(userinfo.len());
    let after = &rest[at + 1..];
    let host_end = after
        .iter()
        .position(|&b| b == b';' || b == b'?')
        .unwrap_or(after.len());
    let parameters = &after[host_end..];
    let phone = parameters
        .split(|&b| b == b';' || b == b'?')
        .any(|p| p.eq_ignore_ascii_case(b"user=phone"));
    Some(UriParts {
        user: &userinfo[..user_end],
        host: &after[..host_end],
        phone,
    })
}

/// The number's characters without visual separators, on the stack;
/// `None` if it is not a number spelling.
fn digits_of(parts: &UriParts<'_>) -> Option<([u8; SPELLING_BYTES_MAX], usize)> {
    let mut out = [0u8; SPELLING_BYTES_MAX];
    let mut len = 0;
    for (i, &byte) in parts.user.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {}
            b'+' if i == 0 => {}
            b'-' | b'.' | b'(' | b')' if parts.phone => continue,
            _ => return None,
        }
        *out.get_mut(len)? = byte;
        len += 1;
    }
    (len > 0).then_some((out, len))
}

/// The real number of a caller's URI (From or P-Asserted-Identity user).
pub fn caller(uri: &[u8]) -> Option<Number> {
    let parts = parts(uri)?;
    let (digits, len) = digits_of(&parts)?;
    let text = std::str::from_utf8(&digits[..len]).ok()?;
    number::parse_real(text).ok()
}

/// X and the extension (or `Number::NONE`) of a Request-URI.
pub fn called(uri: &[u8], policy: XPolicy) -> Option<(Number, Number)> {
    let parts = parts(uri)?;
    let (digits, len) = digits_of(&parts)?;
    let text = std::str::from_utf8(&digits[..len]).ok()?;
    if let Ok(x) = number::parse_virtual(text, policy) {
        return Some((x, Number::NONE));
    }
    // X and an extension: the longest tail of one to four digits whose
    // head is a strict 700 number.
    let strict = XPolicy {
        allow_legacy: false,
    };
    (1..=number::EXTENSION_DIGITS_MAX).find_map(|n| {
        let split = text.len().checked_sub(n)?;
        let (head, tail) = (text.get(..split)?, text.get(split..)?);
        let x = number::parse_virtual(head, strict).ok()?;
        let extension = number::parse_extension(tail).ok()?;
        Some((x, extension))
    })
}

/// The lookup a request asks for: X (and extension) from the Request-URI,
/// the caller from `caller_uri`. `None` when a number is not one.
pub fn query(request_uri: &[u8], caller_uri: &[u8], policy: XPolicy) -> Option<LookupQuery> {
    let (x, extension) = called(request_uri, policy)?;
    Some(LookupQuery {
        caller: caller(caller_uri)?,
        x,
        extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: XPolicy = XPolicy {
        allow_legacy: false,
    };

    fn n(digits: &str) -> Number {
        Number::from_digits(digits.as_bytes())
    }

    #[test]
    fn uris_come_out_of_name_addrs_and_addr_specs() {
        assert_eq!(
            uri_of(b"\"A\" <sip:1@h;user=phone>;tag=9"),
            b"sip:1@h;user=phone"
        );
        assert_eq!(uri_of(b"sip:1@h;tag=9"), b"sip:1@h");
        assert_eq!(uri_of(b"<tel:+86-138-0013-8000>"), b"tel:+86-138-0013-8000");
    }

    #[test]
    fn callers_are_normalised_through_number() {
        for uri in [
            &b"sip:13800138000@h"[..],
            b"sip:+8613800138000@h:5060;transport=udp",
            b"sip:008613800138000@h",
            b"sip:+86-138-0013-8000@h;user=phone",
            b"tel:+86.138.0013.8000;phone-context=x",
            b"sips:8613800138000;npdi@h",
        ] {
            assert_eq!(
                caller(uri),
                Some(n("13800138000")),
                "{:?}",
                String::from_utf8_lossy(uri)
            );
        }
        // A fixed line written after +86 gets its trunk zero back.
        assert_eq!(caller(b"tel:+861012345678"), Some(n("01012345678")));
        // Separators only where a telephone number is declared.
        assert_eq!(caller(b"sip:138-0013-8000@h"), None);
        assert_eq!(caller(b"sip:alice@h"), None);
        assert_eq!(caller(b"sip:h"), None);
        assert_eq!(caller(b"mailto:13800138000@h"), None);
        // A reserved number is no caller.
        assert_eq!(caller(b"sip:110@h"), None);
    }

    #[test]
    fn x_and_extension_come_from_the_request_uri() {
        let x = n("700123456789012");
        assert_eq!(
            called(b"sip:700123456789012@h", STRICT),
            Some((x, Number::NONE))
        );
        assert_eq!(
            called(b"sip:+86700123456789012@h", STRICT),
            Some((x, Number::NONE))
        );
        assert_eq!(
            called(b"tel:+86-700-1234-5678-9012", STRICT),
            Some((x, Number::NONE))
        );
        let (x2, ext) = called(b"sip:7001234567890120042@h;user=phone", STRICT).unwrap();
        assert_eq!((x2, ext.digits()), (x, "0042".to_string()));
        assert!(ext.is_extension());
        assert_eq!(called(b"sip:13800138000@h", STRICT), None);
        assert_eq!(called(b"sip:70012345678901200421@h", STRICT), None);
    }
}
