//! What commands print: one JSON object with `--json`, a short text
//! otherwise. Status names are snake_case and shared with the wire protocol.
//!
//! Text output goes to a terminal, and some of what it shows was chosen by
//! someone else: an order reference is any 32 bytes a platform sent, STATS
//! comes from a node. Every text line is therefore escaped (`escape`):
//! control characters, invisible formatting characters and invalid UTF-8
//! are shown as `\x1b`, `\n`, `\u{202e}`, `\xff`, never written raw.
//! JSON needs no more than serde's own escaping.

use crate::binding::{Binding, LookupResult, Parties, WriteError};
use crate::table::TableError;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// A command's result: the JSON object to print (with "status" first) and
/// whether it counts as success for the exit code.
pub struct Outcome {
    /// The object; always has "status".
    pub object: Map<String, Value>,
    /// Exit code 0 if true, 1 otherwise.
    pub success: bool,
    /// Fields that text output shows from these bytes instead of from the
    /// JSON string: an order reference need not be UTF-8, and JSON carries
    /// it lossily, which would hide the bytes an operator must see.
    pub raw: Vec<(&'static str, Vec<u8>)>,
}

impl Outcome {
    /// A success with `status: ok` and the given fields.
    pub fn ok(fields: Value) -> Outcome {
        Outcome::with_status("ok", fields, true)
    }

    /// An object with the given status and fields.
    pub fn with_status(status: &str, fields: Value, success: bool) -> Outcome {
        let mut object = Map::new();
        object.insert("status".into(), Value::from(status));
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        Outcome {
            object,
            success,
            raw: Vec::new(),
        }
    }

    /// A success showing a binding (QUERY, UPDATE and UNBIND answers).
    pub fn binding(binding: &Binding, now_s: u32) -> Outcome {
        let mut outcome = Outcome::ok(binding_fields(binding, now_s));
        outcome
            .raw
            .push(("order", binding.order.as_bytes().to_vec()));
        outcome
    }

    /// A failed operation.
    pub fn failure(status: &str, error: &str) -> Outcome {
        Outcome::with_status(status, json!({ "error": error }), false)
    }
}

impl From<WriteError> for Outcome {
    fn from(error: WriteError) -> Outcome {
        let mut outcome = Outcome::failure(error.status(), &error.to_string());
        if let WriteError::Conflict {
            binding_id: Some(id),
        } = error
        {
            outcome
                .object
                .insert("binding_id".into(), Value::from(id.0));
        }
        outcome
    }
}

impl From<TableError> for Outcome {
    fn from(error: TableError) -> Outcome {
        let status = match &error {
            TableError::Locked { .. } => "locked",
            TableError::Missing { .. } => "no_store",
            TableError::Io { .. } => "io_error",
            TableError::BadHeader { .. }
            | TableError::WrongVersion { .. }
            | TableError::Truncated { .. }
            | TableError::Corrupt { .. } => "corrupt",
        };
        Outcome::failure(status, &error.to_string())
    }
}

/// The JSON fields of a binding.
fn binding_fields(binding: &Binding, now_s: u32) -> Value {
    let mut fields = json!({
        "binding_id": binding.id.0,
        "mode": binding.parties.mode().as_str(),
        "x": binding.x.digits(),
        "a": binding.parties.a().digits(),
        "tenant": binding.tenant,
        "order": String::from_utf8_lossy(binding.order.as_bytes()),
        "ttl_s": binding.ttl_s,
        "expires_at_s": binding.expires_at_s,
        "expires_in_s": binding.expires_at_s.saturating_sub(now_s),
        "created_at_s": binding.created_at_s,
        "direction": binding.direction.as_str(),
        "recording": binding.recording,
    });
    let extra = match binding.parties {
        Parties::Axb { b, .. } => ("b", Value::from(b.digits())),
        Parties::Axn { default_callee, .. } => (
            "default_callee",
            default_callee.map_or(Value::Null, |c| Value::from(c.digits())),
        ),
        Parties::Axe { extension, .. } => ("ext", Value::from(extension.digits())),
    };
    if let Value::Object(map) = &mut fields {
        map.insert(extra.0.into(), extra.1);
    }
    fields
}

/// The outcome of a lookup.
pub fn lookup_outcome(result: &LookupResult) -> Outcome {
    match result {
        LookupResult::Route(route) => Outcome::ok(json!({
            "callee": route.callee.digits(),
            "display": route.display.digits(),
            "binding_id": route.binding_id.0,
            "recording": route.recording,
            "expires_in_s": route.expires_in_s,
        })),
        LookupResult::Reject(reject) => Outcome::with_status(reject.as_str(), json!({}), true),
    }
}

/// Format characters that change how a terminal shows the text around
/// them without showing themselves: bidirectional overrides and isolates
/// (which can reorder a line, "Trojan Source"), zero-width characters and
/// the byte-order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
    )
}

/// Appends `c` as text output shows it. `backslash` doubles a backslash,
/// so that an escape in the output always stands for one character (JSON
/// text, which escapes its own backslashes, passes `false`).
fn escape_char(c: char, backslash: bool, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = match c {
        '\\' if backslash => out.write_str("\\\\"),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if c.is_ascii_control() => write!(out, "\\x{:02x}", u32::from(c)),
        c if c.is_control() || is_invisible_format(c) => write!(out, "\\u{{{:x}}}", u32::from(c)),
        c => out.write_char(c),
    };
}

/// Appends `bytes` as one line of a terminal shows them: printable
/// characters as they are, `\n`, `\r`, `\t`, other ASCII controls and DEL
/// as `\xNN`, other control and invisible formatting characters as
/// `\u{NNNN}`, each byte that is not part of valid UTF-8 as `\xNN`, and a
/// backslash doubled if `backslash`.
fn escape(bytes: &[u8], backslash: bool, out: &mut String) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            escape_char(c, backslash, out);
        }
        for byte in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
}

/// The text form of an outcome: `key: value` pairs on one line, every
/// part escaped.
pub fn text_line(outcome: &Outcome) -> String {
    let mut line = String::new();
    for (key, value) in &outcome.object {
        if !line.is_empty() {
            line.push_str("  ");
        }
        escape(key.as_bytes(), true, &mut line);
        line.push_str(": ");
        let raw = outcome.raw.iter().find(|(name, _)| name == key);
        match (raw, value) {
            (Some((_, bytes)), _) => escape(bytes, true, &mut line),
            (None, Value::String(text)) => escape(text.as_bytes(), true, &mut line),
            (None, other) => escape(other.to_string().as_bytes(), false, &mut line),
        }
    }
    line
}

/// Prints the outcome and returns the exit code.
pub fn emit(outcome: &Outcome, json: bool) -> i32 {
    if json {
        println!("{}", Value::Object(outcome.object.clone()));
    } else {
        let line = text_line(outcome);
        if outcome.success {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
    i32::from(!outcome.success)
}

#[cfg(test)]
mod tests {
    //! Text output shows every byte a terminal would act on as an escape.

    use super::*;

    fn escape(bytes: &[u8]) -> String {
        let mut out = String::new();
        super::escape(bytes, true, &mut out);
        out
    }

    #[test]
    fn control_characters_and_invalid_utf8_are_escaped() {
        assert_eq!(escape(b"load-42"), "load-42");
        assert_eq!(escape(b"\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(escape(b"a\nb\tc\rd\x00\x7f"), "a\\nb\\tc\\rd\\x00\\x7f");
        assert_eq!(escape(b"\xff\xfeok\xc3"), "\\xff\\xfeok\\xc3");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        // C1 CSI (U+009B) and a right-to-left override, valid UTF-8 both.
        assert_eq!(escape("\u{9b}2J\u{202e}".as_bytes()), "\\u{9b}2J\\u{202e}");
        // Printable non-ASCII stays readable.
        assert_eq!(escape("订单-7".as_bytes()), "订单-7");
    }

    #[test]
    fn text_lines_escape_keys_values_raw_fields_and_nested_json() {
        let mut outcome = Outcome::ok(json!({
            "order": "lossy \u{fffd}",
            "note\x1b": "x\u{7}",
            "nested": { "k": "\u{9b}\u{1b}" },
        }));
        outcome
            .raw
            .push(("order", b"\x1b]0;title\x07\xff".to_vec()));
        let line = text_line(&outcome);
        assert_eq!(
            line,
            "status: ok  order: \\x1b]0;title\\x07\\xff  note\\x1b: x\\x07  \
             nested: {\"k\":\"\\u{9b}\\u001b\"}"
        );
        assert!(line.chars().all(|c| !c.is_control()));
    }
}
