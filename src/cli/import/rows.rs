//! Phase 1 of `x700 import`: the whole file is read and every row checked
//! before anything is sent. A row becomes a `BindRequest`, or one error per
//! problem found (line, column, reason). Rules, stated once here:
//!
//! - The header names the columns, in any order: `mode`, `x`, `a`, `b`,
//!   `ext`, `order`, `ttl_s`, `expires_at`, `direction`, `recording`. An
//!   unknown or repeated column is refused; `x`, `a`, `order` and at least
//!   one of `ttl_s` and `expires_at` must be there.
//! - `mode` is axb, axn or axe (empty: axb). AXB needs `b`; AXN takes an
//!   optional `b` (its default callee); AXE needs `ext`. A column the mode
//!   does not use must be empty.
//! - Numbers go through the same parsers as every other command
//!   (`crate::number`: a `+86` or `0086` prefix is removed, and so on).
//! - Each row fills exactly one of `ttl_s` (1 to `TTL_S_MAX`) and
//!   `expires_at` (RFC 3339, or Unix seconds), which becomes a lifetime
//!   from the moment the file was checked; a time not in the future is
//!   refused.
//! - `direction` is both, a2b or b2a (empty: both); `recording` is 0, 1,
//!   true or false (empty: 0).
//! - No two rows may claim the same place: the same party (AXB's A or B)
//!   on the same X, the same extension on the same X, or an AXN X twice.

use super::csv::{self, Record};
use crate::binding::{
    BindRequest, Direction, InvalidRequest, OrderRef, Parties, WriteError, TTL_S_MAX,
};
use crate::number::{parse_extension, parse_real, parse_virtual, Number, NumberError, XPolicy};
use std::collections::HashMap;

/// Most data rows one file may hold (split a larger migration into
/// several files, each imported and reported on its own).
pub const ROWS_MAX: usize = 1_000_000;
/// Longest field, in bytes (the longest valid one, an order reference, is
/// 32; numbers with `+86` and separators stay well under this).
pub const FIELD_BYTES_MAX: usize = 64;
/// Largest file accepted, bytes: `ROWS_MAX` rows of generous width.
pub const FILE_BYTES_MAX: u64 = 256 << 20;

/// A checked row: where it is in the file and what it binds.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Line number of the row (1 is the header).
    pub line: u64,
    /// The bind it asks for.
    pub request: BindRequest,
}

/// A problem found in phase 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// Line number (1 is the header).
    pub line: u64,
    /// The column at fault, if one is.
    pub column: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// Its status name: `bad_number`, `bad_request` or `duplicate`.
    pub status: &'static str,
}

/// The columns an import file may have.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Column {
    Mode,
    X,
    A,
    B,
    Ext,
    Order,
    TtlS,
    ExpiresAt,
    Direction,
    Recording,
}

const COLUMNS: [(&str, Column); 10] = [
    ("mode", Column::Mode),
    ("x", Column::X),
    ("a", Column::A),
    ("b", Column::B),
    ("ext", Column::Ext),
    ("order", Column::Order),
    ("ttl_s", Column::TtlS),
    ("expires_at", Column::ExpiresAt),
    ("direction", Column::Direction),
    ("recording", Column::Recording),
];

fn column_name(column: Column) -> &'static str {
    COLUMNS
        .iter()
        .find(|(_, c)| *c == column)
        .map_or("?", |(name, _)| name)
}

/// Reads and checks the whole file: every row, or every problem.
pub fn check_file(
    text: &str,
    tenant: u32,
    policy: XPolicy,
    now_s: u32,
) -> Result<Vec<Row>, Vec<RowError>> {
    let records = csv::records(text, FIELD_BYTES_MAX).map_err(|error| {
        vec![RowError {
            line: error.line,
            column: None,
            reason: error.reason,
            status: "bad_request",
        }]
    })?;
    let Some((header, data)) = records.split_first() else {
        return Err(vec![file_error(
            1,
            "the file is empty: it needs a header row",
        )]);
    };
    let columns = check_header(header)?;
    if data.is_empty() {
        return Err(vec![file_error(header.line, "the file has no data rows")]);
    }
    if data.len() > ROWS_MAX {
        return Err(vec![file_error(
            header.line,
            &format!("{} data rows; at most {ROWS_MAX} per file", data.len()),
        )]);
    }
    let mut rows = Vec::with_capacity(data.len());
    let mut errors = Vec::new();
    let mut places = Places::default();
    for record in data {
        let checker = RowChecker {
            record,
            columns: &columns,
            errors: &mut errors,
        };
        if let Some(request) = checker.check(tenant, policy, now_s) {
            if let Some(error) = places.claim(record.line, &request) {
                errors.push(error);
            } else {
                rows.push(Row {
                    line: record.line,
                    request,
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

fn file_error(line: u64, reason: &str) -> RowError {
    RowError {
        line,
        column: None,
        reason: reason.to_string(),
        status: "bad_request",
    }
}

/// The column of each field position.
fn check_header(header: &Record) -> Result<Vec<Column>, Vec<RowError>> {
    let mut columns = Vec::with_capacity(header.fields.len());
    let mut errors = Vec::new();
    for name in &header.fields {
        let trimmed = name.trim().trim_start_matches('\u{feff}');
        match COLUMNS.iter().find(|(known, _)| *known == trimmed) {
            Some((_, column)) if columns.contains(column) => errors.push(RowError {
                line: header.line,
                column: Some(trimmed.to_string()),
                reason: format!("column {trimmed:?} appears twice"),
                status: "bad_request",
            }),
            Some((_, column)) => columns.push(*column),
            None => errors.push(RowError {
                line: header.line,
                column: Some(trimmed.to_string()),
                reason: format!(
                    "unknown column {trimmed:?} (known: mode, x, a, b, ext, order, ttl_s, \
                     expires_at, direction, recording)"
                ),
                status: "bad_request",
            }),
        }
    }
    for required in [Column::X, Column::A, Column::Order] {
        if !columns.contains(&required) {
            errors.push(file_error(
                header.line,
                &format!("the header lacks column {:?}", column_name(required)),
            ));
        }
    }
    if !columns.contains(&Column::TtlS) && !columns.contains(&Column::ExpiresAt) {
        errors.push(file_error(
            header.line,
            "the header needs a ttl_s or an expires_at column",
        ));
    }
    if errors.is_empty() {
        Ok(columns)
    } else {
        Err(errors)
    }
}

/// Checks one data row, pushing every problem it finds.
struct RowChecker<'a> {
    record: &'a Record,
    columns: &'a [Column],
    errors: &'a mut Vec<RowError>,
}

impl RowChecker<'_> {
    /// The field of `column`, trimmed; empty if the header lacks it.
    fn field(&self, column: Column) -> &str {
        self.columns
            .iter()
            .position(|c| *c == column)
            .and_then(|i| self.record.fields.get(i))
            .map_or("", |f| f.trim())
    }

    fn fail(&mut self, column: Column, status: &'static str, reason: String) {
        self.errors.push(RowError {
            line: self.record.line,
            column: Some(column_name(column).to_string()),
            reason,
            status,
        });
    }

    fn number(
        &mut self,
        column: Column,
        parse: impl FnOnce(&str) -> Result<Number, NumberError>,
    ) -> Option<Number> {
        let text = self.field(column).to_string();
        if text.is_empty() {
            self.fail(column, "bad_request", "empty".into());
            return None;
        }
        match parse(&text) {
            Ok(number) => Some(number),
            Err(error) => {
                self.fail(column, "bad_number", format!("{text:?}: {error}"));
                None
            }
        }
    }

    /// Fails if `column` holds anything: the row's mode does not use it.
    fn unused(&mut self, column: Column, mode: &str) {
        if !self.field(column).is_empty() {
            let reason = format!("mode {mode} takes no {}", column_name(column));
            self.fail(column, "bad_request", reason);
        }
    }

    fn check(mut self, tenant: u32, policy: XPolicy, now_s: u32) -> Option<BindRequest> {
        if self.record.fields.len() != self.columns.len() {
            self.errors.push(file_error(
                self.record.line,
                &format!(
                    "{} fields; the header has {}",
                    self.record.fields.len(),
                    self.columns.len()
                ),
            ));
            return None;
        }
        let before = self.errors.len();
        let x = self.number(Column::X, |t| parse_virtual(t, policy));
        let a = self.number(Column::A, parse_real);
        let mode = self.field(Column::Mode).to_ascii_lowercase();
        let parties = match mode.as_str() {
            "" | "axb" => {
                self.unused(Column::Ext, "axb");
                let b = self.number(Column::B, parse_real);
                match (a, b) {
                    (Some(a), Some(b)) if a == b => {
                        let reason = InvalidRequest::SamePartyTwice.to_string();
                        self.fail(Column::B, "bad_request", reason);
                        None
                    }
                    (Some(a), Some(b)) => Some(Parties::Axb { a, b }),
                    _ => None,
                }
            }
            "axn" => {
                self.unused(Column::Ext, "axn");
                let default_callee = if self.field(Column::B).is_empty() {
                    Some(None)
                } else {
                    self.number(Column::B, parse_real).map(Some)
                };
                a.zip(default_callee)
                    .map(|(a, default_callee)| Parties::Axn { a, default_callee })
            }
            "axe" => {
                self.unused(Column::B, "axe");
                let extension = self.number(Column::Ext, parse_extension);
                a.zip(extension)
                    .map(|(a, extension)| Parties::Axe { a, extension })
            }
            other => {
                let reason = format!("{other:?} is not one of axb, axn, axe");
                self.fail(Column::Mode, "bad_request", reason);
                None
            }
        };
        let order = match OrderRef::new(self.field(Column::Order).as_bytes()) {
            Ok(order) => Some(order),
            Err(error) => {
                let status = WriteError::Invalid(error.clone()).status();
                self.fail(Column::Order, status, error.to_string());
                None
            }
        };
        let ttl_s = self.ttl_s(now_s);
        let direction = self.direction();
        let recording = self.recording();
        if self.errors.len() != before {
            return None;
        }
        Some(BindRequest {
            x: x?,
            parties: parties?,
            tenant,
            order: order?,
            ttl_s: ttl_s?,
            direction: direction?,
            recording: recording?,
        })
    }

    /// The lifetime: `ttl_s`, or `expires_at` less `now_s`.
    fn ttl_s(&mut self, now_s: u32) -> Option<u32> {
        let ttl = self.field(Column::TtlS).to_string();
        let expires = self.field(Column::ExpiresAt).to_string();
        match (ttl.is_empty(), expires.is_empty()) {
            (true, true) => {
                let reason = "give ttl_s or expires_at".to_string();
                self.fail(Column::TtlS, "bad_request", reason);
                None
            }
            (false, false) => {
                let reason = "give ttl_s or expires_at, not both".to_string();
                self.fail(Column::ExpiresAt, "bad_request", reason);
                None
            }
            (false, true) => match ttl.parse::<u64>() {
                Ok(seconds) if (1..=u64::from(TTL_S_MAX)).contains(&seconds) => {
                    u32::try_from(seconds).ok()
                }
                _ => {
                    let reason = format!("{ttl:?} is not a whole number from 1 to {TTL_S_MAX}");
                    self.fail(Column::TtlS, "bad_request", reason);
                    None
                }
            },
            (true, false) => {
                let Some(at_s) = parse_time_s(&expires) else {
                    let reason = format!("{expires:?} is not an RFC 3339 time or Unix seconds");
                    self.fail(Column::ExpiresAt, "bad_request", reason);
                    return None;
                };
                let ttl_s = at_s - i64::from(now_s);
                if ttl_s < 1 {
                    let reason = format!("{expires:?} is in the past ({} s ago)", -ttl_s);
                    self.fail(Column::ExpiresAt, "bad_request", reason);
                    return None;
                }
                match u32::try_from(ttl_s) {
                    Ok(ttl_s) if ttl_s <= TTL_S_MAX => Some(ttl_s),
                    _ => {
                        let reason = format!("{expires:?} is more than {TTL_S_MAX} s from now");
                        self.fail(Column::ExpiresAt, "bad_request", reason);
                        None
                    }
                }
            }
        }
    }

    fn direction(&mut self) -> Option<Direction> {
        let text = self.field(Column::Direction).to_ascii_lowercase();
        if text.is_empty() {
            return Some(Direction::Both);
        }
        let direction = Direction::parse(&text);
        if direction.is_none() {
            let reason = format!("{text:?} is not one of both, a2b, b2a");
            self.fail(Column::Direction, "bad_request", reason);
        }
        direction
    }

    fn recording(&mut self) -> Option<bool> {
        match self.field(Column::Recording).to_ascii_lowercase().as_str() {
            "" | "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            other => {
                let reason = format!("{other:?} is not one of 0, 1, true, false");
                self.fail(Column::Recording, "bad_request", reason);
                None
            }
        }
    }
}

/// The places on X the rows have claimed so far, and the line of each.
#[derive(Default)]
struct Places {
    /// (X, party or extension) -> line; an AXN claims (X, NONE).
    parties: HashMap<(u64, u64), u64>,
}

impl Places {
    /// Claims the places of `request`; the error names the earlier line
    /// that holds one of them.
    fn claim(&mut self, line: u64, request: &BindRequest) -> Option<RowError> {
        let x = request.x.word();
        let keys: Vec<(u64, u64)> = match request.parties {
            Parties::Axb { a, b } => vec![(x, a.word()), (x, b.word())],
            Parties::Axn { .. } => vec![(x, Number::NONE.word())],
            Parties::Axe { extension, .. } => vec![(x, extension.word())],
        };
        for key in &keys {
            if let Some(earlier) = self.parties.get(key) {
                let what = match request.parties {
                    Parties::Axn { .. } => "this AXN X",
                    Parties::Axe { .. } => "this extension on X",
                    Parties::Axb { .. } => "a party of this row on X",
                };
                return Some(RowError {
                    line,
                    column: None,
                    reason: format!("duplicate: line {earlier} already binds {what}"),
                    status: "duplicate",
                });
            }
        }
        for key in keys {
            self.parties.insert(key, line);
        }
        None
    }
}

/// Seconds since the Unix epoch of `text`: Unix seconds (digits only), or
/// an RFC 3339 time `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` (`T` may
/// be `t` or a space; the fraction is dropped).
pub fn parse_time_s(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return None;
    }
    let digits = |from: usize, count: usize| -> Option<i64> {
        let part = bytes.get(from..from + count)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let separators_ok = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits_len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return None;
        }
        rest = &fraction[digits_len..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let zone = rest.as_bytes();
            if zone.len() != 6 || zone[3] != b':' {
                return None;
            }
            let sign = match zone[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset_s)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (the well-known
/// era-based conversion: 400-year eras of 146,097 days).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    //! Phase 1's rules, one by one, on small files.

    use super::*;

    const NOW_S: u32 = 1_800_000_000;

    fn check(text: &str) -> Result<Vec<Row>, Vec<RowError>> {
        check_file(text, 7, XPolicy::default(), NOW_S)
    }

    fn lines_and_columns(errors: &[RowError]) -> Vec<(u64, Option<&str>)> {
        errors
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect()
    }

    #[test]
    fn times_parse_as_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time_s("0"), Some(0));
        assert_eq!(parse_time_s("1800000000"), Some(1_800_000_000));
        assert_eq!(parse_time_s("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time_s("2027-01-15T16:00:00+08:00"),
            Some(1_800_000_000)
        );
        assert_eq!(
            parse_time_s("2027-01-15T03:00:00-05:00"),
            Some(1_800_000_000)
        );
        assert_eq!(parse_time_s("2000-02-29 12:00:00.5z"), Some(951_825_600));
        assert_eq!(parse_time_s("2001-02-29T00:00:00Z"), None);
        assert_eq!(parse_time_s("2001-01-01T00:00:00"), None);
        assert_eq!(parse_time_s("2001-01-01T24:00:00Z"), None);
        assert_eq!(parse_time_s("tomorrow"), None);
    }

    #[test]
    fn a_valid_file_gives_one_request_per_row_in_any_column_order() {
        let text = "order,x,a,b,mode,ext,ttl_s,expires_at,direction,recording\n\
                    o1,+86700123400000001,+8613800000001,13800000002,,,60,,,\n\
                    o2,700123400000002,13800000001,,axn,,,1800000600,a2b,true\n\
                    o3,700123400000003,13800000001,,AXE,12,,2027-01-15T16:10:00+08:00,,1\n";
        let rows = check(text).expect("valid");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].request.tenant, 7);
        assert_eq!(rows[0].request.ttl_s, 60);
        assert_eq!(rows[0].request.x.digits(), "700123400000001");
        assert_eq!(rows[0].request.parties.a().digits(), "13800000001");
        assert_eq!(rows[1].request.ttl_s, 600);
        assert_eq!(rows[2].request.ttl_s, 600);
        assert_eq!(rows[1].request.direction, Direction::AToB);
        assert!(rows[1].request.recording);
        assert!(matches!(
            rows[1].request.parties,
            Parties::Axn {
                default_callee: None,
                ..
            }
        ));
        assert!(matches!(rows[2].request.parties, Parties::Axe { .. }));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_column() {
        let text = "x,a,b,order,ttl_s,expires_at,mode\n\
                    700123400000001,13800000001,13800000002,o1,60,,\n\
                    700123400000002,13800000001,1380000000x,o2,60,,\n\
                    700123400000003,13800000001,13800000002,,60,,\n\
                    700123400000004,13800000001,13800000002,o4,,1700000000,\n\
                    700123400000005,13800000001,13800000002,o5,60,1900000000,\n\
                    700123400000006,13800000001,13800000002,o6,0,,\n\
                    700123400000007,13800000001,13800000002,o7,60,,axq\n\
                    700123400000008,13800000001,,o8,60,,\n\
                    700123400000001,13800000002,13800000009,o9,60,,\n\
                    700123400000010,13800000001,13800000001,o10,60,,\n\
                    700123400000011,13800000001\n";
        let errors = check(text).expect_err("bad rows");
        assert_eq!(
            lines_and_columns(&errors),
            vec![
                (3, Some("b")),
                (4, Some("order")),
                (5, Some("expires_at")),
                (6, Some("expires_at")),
                (7, Some("ttl_s")),
                (8, Some("mode")),
                (9, Some("b")),
                (10, None),
                (11, Some("b")),
                (12, None),
            ]
        );
        assert_eq!(errors[0].status, "bad_number");
        assert_eq!(errors[7].status, "duplicate");
        assert!(errors[7].reason.contains("line 2"), "{}", errors[7].reason);
    }

    #[test]
    fn an_axn_x_twice_and_an_extension_twice_are_duplicates() {
        let text = "mode,x,a,b,ext,order,ttl_s\n\
                    axn,700123400000001,13800000001,,,o1,60\n\
                    axn,700123400000001,13800000002,,,o2,60\n\
                    axe,700123400000002,13800000001,,7,o3,60\n\
                    axe,700123400000002,13800000002,,7,o4,60\n\
                    axe,700123400000002,13800000002,,8,o5,60\n";
        let errors = check(text).expect_err("duplicates");
        assert_eq!(lines_and_columns(&errors), vec![(3, None), (5, None)]);
    }

    #[test]
    fn header_problems_are_reported_on_line_one() {
        let errors = check("x,a,order,ttl_s,colour\n").expect_err("unknown column");
        assert_eq!(lines_and_columns(&errors), vec![(1, Some("colour"))]);
        let errors = check("x,a,x,ttl_s\n").expect_err("repeated and missing");
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.line == 1));
        let errors = check("x,a,order\n7,1,o\n").expect_err("no lifetime column");
        assert_eq!(errors[0].line, 1);
        assert_eq!(check("").expect_err("empty")[0].line, 1);
        assert_eq!(
            check("x,a,order,ttl_s\r\n").expect_err("no rows")[0].line,
            1
        );
    }
}
