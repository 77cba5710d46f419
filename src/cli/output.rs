//! What commands print: one JSON object with `--json`, a short text
//! otherwise. Status names are snake_case and shared with the wire protocol.

use crate::binding::{Binding, LookupResult, Parties, WriteError};
use crate::table::TableError;
use serde_json::{json, Map, Value};

/// A command's result: the JSON object to print (with "status" first) and
/// whether it counts as success for the exit code.
pub struct Outcome {
    /// The object; always has "status".
    pub object: Map<String, Value>,
    /// Exit code 0 if true, 1 otherwise.
    pub success: bool,
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
        Outcome { object, success }
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
pub fn binding_fields(binding: &Binding, now_s: u32) -> Value {
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

/// Prints the outcome and returns the exit code.
pub fn emit(outcome: &Outcome, json: bool) -> i32 {
    if json {
        println!("{}", Value::Object(outcome.object.clone()));
    } else {
        let mut line = String::new();
        for (key, value) in &outcome.object {
            if !line.is_empty() {
                line.push_str("  ");
            }
            match value {
                Value::String(text) => line.push_str(&format!("{key}: {text}")),
                other => line.push_str(&format!("{key}: {other}")),
            }
        }
        if outcome.success {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }
    i32::from(!outcome.success)
}
