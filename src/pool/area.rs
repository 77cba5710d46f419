//! Area codes (the city a pool range serves), provinces, and how far a bind
//! may fall back when its area has no room.
//!
//! The area -> province table is a default taken from the public Chinese
//! numbering plan (long-distance codes by region, longest prefix wins). It is
//! only a default: a [`super::PoolRange`] carries its own province, which the
//! operator may set explicitly, and the range's province is what fallback
//! uses.

/// The 31 mainland provincial divisions (provinces, autonomous regions and
/// municipalities), plus `Unknown` for an area code the default table does
/// not place. The discriminants are the on-disk encoding: never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
#[allow(missing_docs)] // The variant names are the divisions' own names.
pub enum Province {
    Unknown = 0,
    Beijing = 1,
    Tianjin = 2,
    Hebei = 3,
    Shanxi = 4,
    InnerMongolia = 5,
    Liaoning = 6,
    Jilin = 7,
    Heilongjiang = 8,
    Shanghai = 9,
    Jiangsu = 10,
    Zhejiang = 11,
    Anhui = 12,
    Fujian = 13,
    Jiangxi = 14,
    Shandong = 15,
    Henan = 16,
    Hubei = 17,
    Hunan = 18,
    Guangdong = 19,
    Guangxi = 20,
    Hainan = 21,
    Chongqing = 22,
    Sichuan = 23,
    Guizhou = 24,
    Yunnan = 25,
    Tibet = 26,
    Shaanxi = 27,
    Gansu = 28,
    Qinghai = 29,
    Ningxia = 30,
    Xinjiang = 31,
}

/// Every variant in discriminant order (index = encoding).
const PROVINCES: [Province; 32] = [
    Province::Unknown,
    Province::Beijing,
    Province::Tianjin,
    Province::Hebei,
    Province::Shanxi,
    Province::InnerMongolia,
    Province::Liaoning,
    Province::Jilin,
    Province::Heilongjiang,
    Province::Shanghai,
    Province::Jiangsu,
    Province::Zhejiang,
    Province::Anhui,
    Province::Fujian,
    Province::Jiangxi,
    Province::Shandong,
    Province::Henan,
    Province::Hubei,
    Province::Hunan,
    Province::Guangdong,
    Province::Guangxi,
    Province::Hainan,
    Province::Chongqing,
    Province::Sichuan,
    Province::Guizhou,
    Province::Yunnan,
    Province::Tibet,
    Province::Shaanxi,
    Province::Gansu,
    Province::Qinghai,
    Province::Ningxia,
    Province::Xinjiang,
];

impl Province {
    /// The one-byte encoding used in checkpoints.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Decodes [`Province::code`]; `None` for a byte no variant has.
    pub fn from_code(code: u8) -> Option<Province> {
        PROVINCES.get(usize::from(code)).copied()
    }

    /// The name as an operator types it (`guangdong`, `inner-mongolia`).
    pub fn name(self) -> &'static str {
        PROVINCE_NAMES[usize::from(self.code())]
    }

    /// Parses [`Province::name`] (case-insensitive). `unknown` is refused:
    /// naming a province is the point.
    pub fn parse(name: &str) -> Option<Province> {
        let lower = name.to_ascii_lowercase();
        (1..PROVINCES.len())
            .find(|&i| PROVINCE_NAMES[i] == lower)
            .map(|i| PROVINCES[i])
    }
}

/// Names by encoding.
const PROVINCE_NAMES: [&str; 32] = [
    "unknown",
    "beijing",
    "tianjin",
    "hebei",
    "shanxi",
    "inner-mongolia",
    "liaoning",
    "jilin",
    "heilongjiang",
    "shanghai",
    "jiangsu",
    "zhejiang",
    "anhui",
    "fujian",
    "jiangxi",
    "shandong",
    "henan",
    "hubei",
    "hunan",
    "guangdong",
    "guangxi",
    "hainan",
    "chongqing",
    "sichuan",
    "guizhou",
    "yunnan",
    "tibet",
    "shaanxi",
    "gansu",
    "qinghai",
    "ningxia",
    "xinjiang",
];

/// The default table: area-code prefixes and their province; the longest
/// matching prefix wins, so the exceptions (`0335` in Hebei among Shanxi's
/// `03x`, `0898` Hainan among Tibet's `089`) sit beside their block.
const AREA_PREFIXES: &[(&str, Province)] = &[
    ("010", Province::Beijing),
    ("020", Province::Guangdong),
    ("021", Province::Shanghai),
    ("022", Province::Tianjin),
    ("023", Province::Chongqing),
    ("024", Province::Liaoning),
    ("025", Province::Jiangsu),
    ("027", Province::Hubei),
    ("028", Province::Sichuan),
    ("029", Province::Shaanxi),
    ("031", Province::Hebei),
    ("0335", Province::Hebei),
    ("0349", Province::Shanxi),
    ("035", Province::Shanxi),
    ("037", Province::Henan),
    ("039", Province::Henan),
    ("041", Province::Liaoning),
    ("042", Province::Liaoning),
    ("043", Province::Jilin),
    ("044", Province::Jilin),
    ("045", Province::Heilongjiang),
    ("046", Province::Heilongjiang),
    ("047", Province::InnerMongolia),
    ("048", Province::InnerMongolia),
    ("051", Province::Jiangsu),
    ("052", Province::Jiangsu),
    ("053", Province::Shandong),
    ("054", Province::Shandong),
    ("055", Province::Anhui),
    ("056", Province::Anhui),
    ("057", Province::Zhejiang),
    ("0580", Province::Zhejiang),
    ("059", Province::Fujian),
    ("063", Province::Shandong),
    ("066", Province::Guangdong),
    ("069", Province::Yunnan),
    ("0701", Province::Jiangxi),
    ("071", Province::Hubei),
    ("072", Province::Hubei),
    ("073", Province::Hunan),
    ("074", Province::Hunan),
    ("075", Province::Guangdong),
    ("076", Province::Guangdong),
    ("077", Province::Guangxi),
    ("079", Province::Jiangxi),
    ("081", Province::Sichuan),
    ("082", Province::Sichuan),
    ("083", Province::Sichuan),
    ("085", Province::Guizhou),
    ("087", Province::Yunnan),
    ("088", Province::Yunnan),
    ("089", Province::Tibet),
    ("0898", Province::Hainan),
    ("0899", Province::Hainan),
    ("090", Province::Xinjiang),
    ("091", Province::Shaanxi),
    ("093", Province::Gansu),
    ("094", Province::Gansu),
    ("095", Province::Ningxia),
    ("097", Province::Qinghai),
    ("099", Province::Xinjiang),
];

/// Most digits in an area code.
pub const AREA_DIGITS_MAX: usize = 4;
/// Fewest digits in an area code (`010`).
pub const AREA_DIGITS_MIN: usize = 3;

/// A Chinese long-distance area code such as `010` or `0755`: 3 or 4 ASCII
/// digits beginning `0`, the second digit not `0` (`00` opens an
/// international number). Ordered by its digits, so maps keyed by area
/// iterate in a fixed order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AreaCode {
    digits: [u8; AREA_DIGITS_MAX],
    len: u8,
}

impl AreaCode {
    /// Parses an area code; `None` unless it is 3-4 digits `0[1-9]..`.
    pub fn parse(text: &str) -> Option<AreaCode> {
        let bytes = text.as_bytes();
        let valid = (AREA_DIGITS_MIN..=AREA_DIGITS_MAX).contains(&bytes.len())
            && bytes.iter().all(u8::is_ascii_digit)
            && bytes[0] == b'0'
            && bytes[1] != b'0';
        if !valid {
            return None;
        }
        let mut digits = [0u8; AREA_DIGITS_MAX];
        digits[..bytes.len()].copy_from_slice(bytes);
        // The length is 3 or 4, checked above.
        Some(AreaCode {
            digits,
            len: bytes.len() as u8,
        })
    }

    /// The digits, as typed (`"0755"`).
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored (parse and decode check them),
        // so this cannot fail; the fallback keeps it panic-free anyway.
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or("")
    }

    /// The province the default table places this area in (see the module
    /// docs); `Province::Unknown` if no prefix matches.
    pub fn province(&self) -> Province {
        let code = self.as_str();
        AREA_PREFIXES
            .iter()
            .filter(|(prefix, _)| code.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(Province::Unknown, |&(_, province)| province)
    }

    /// The checkpoint encoding: the length then four digit bytes (zero
    /// padded).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        out.extend_from_slice(&self.digits);
    }

    /// Decodes [`AreaCode::encode`]'s five bytes.
    pub(crate) fn decode(bytes: [u8; 5]) -> Option<AreaCode> {
        let len = usize::from(bytes[0]);
        if len > AREA_DIGITS_MAX || bytes[1 + len..].iter().any(|&b| b != 0) {
            return None;
        }
        let text = std::str::from_utf8(&bytes[1..=len]).ok()?;
        AreaCode::parse(text)
    }
}

impl std::fmt::Debug for AreaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AreaCode({})", self.as_str())
    }
}

impl std::fmt::Display for AreaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a bind that asks x700 to choose X may look beyond its area, as
/// the request states. Each step is tried only when the previous one has no
/// valid X; nothing beyond the stated step is ever used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fallback {
    /// The asked area only.
    None,
    /// The area, then the tenant's other areas in the same province.
    Province,
    /// The area, the province, then any of the tenant's areas.
    Any,
}

impl Fallback {
    /// The name used on the command line and in JSON (`none`, `province`,
    /// `any`).
    pub fn name(self) -> &'static str {
        match self {
            Fallback::None => "none",
            Fallback::Province => "province",
            Fallback::Any => "any",
        }
    }

    /// Parses [`Fallback::name`].
    pub fn parse(name: &str) -> Option<Fallback> {
        match name {
            "none" => Some(Fallback::None),
            "province" => Some(Fallback::Province),
            "any" => Some(Fallback::Any),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_codes_parse_only_chinese_long_distance_codes() {
        assert_eq!(
            AreaCode::parse("0755").map(|a| a.to_string()),
            Some("0755".into())
        );
        assert_eq!(
            AreaCode::parse("010").map(|a| a.to_string()),
            Some("010".into())
        );
        for bad in ["", "10", "755", "00755", "0055", "07a5", "01", "075555"] {
            assert!(AreaCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn default_table_places_well_known_cities() {
        let cases = [
            ("010", Province::Beijing),
            ("021", Province::Shanghai),
            ("020", Province::Guangdong),
            ("0755", Province::Guangdong),
            ("0769", Province::Guangdong),
            ("0571", Province::Zhejiang),
            ("0335", Province::Hebei),
            ("0351", Province::Shanxi),
            ("0898", Province::Hainan),
            ("0891", Province::Tibet),
            ("0991", Province::Xinjiang),
            ("0471", Province::InnerMongolia),
            ("0532", Province::Shandong),
            ("0631", Province::Shandong),
            ("0701", Province::Jiangxi),
            ("029", Province::Shaanxi),
            ("0351", Province::Shanxi),
            ("026", Province::Unknown),
        ];
        for (code, province) in cases {
            assert_eq!(
                AreaCode::parse(code).unwrap().province(),
                province,
                "{code}"
            );
        }
    }

    #[test]
    fn every_province_but_unknown_is_reachable_and_round_trips() {
        for (i, &province) in PROVINCES.iter().enumerate() {
            assert_eq!(usize::from(province.code()), i);
            assert_eq!(Province::from_code(province.code()), Some(province));
            if province != Province::Unknown {
                assert_eq!(Province::parse(province.name()), Some(province));
                assert!(
                    AREA_PREFIXES.iter().any(|&(_, p)| p == province),
                    "{province:?}"
                );
            }
        }
        assert_eq!(Province::from_code(32), None);
    }

    #[test]
    fn area_encoding_round_trips_and_refuses_garbage() {
        let mut out = Vec::new();
        AreaCode::parse("0755").unwrap().encode(&mut out);
        let bytes: [u8; 5] = out.try_into().unwrap();
        assert_eq!(AreaCode::decode(bytes), AreaCode::parse("0755"));
        assert_eq!(AreaCode::decode([9, 0, 0, 0, 0]), None);
        assert_eq!(AreaCode::decode([3, b'0', b'1', b'0', b'7']), None);
        assert_eq!(AreaCode::decode([3, b'1', b'1', b'0', 0]), None);
    }
}
