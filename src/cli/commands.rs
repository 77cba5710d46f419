//! The offline commands: each opens the data directory (taking its lock),
//! does one operation and closes it cleanly.

use super::args::{
    BindAxbArgs, BindAxeArgs, BindAxnArgs, BindCommand, BindCommon, LookupArgs, QueryArgs,
    StatsArgs, StoreArgs, UnbindArgs, UpdateArgs,
};
use super::output::{lookup_outcome, Outcome};
use crate::binding::{
    BindRequest, BindingId, Direction, InvalidRequest, LookupQuery, OrderRef, Parties, Update,
    WriteError,
};
use crate::number::{parse_extension, parse_real, parse_virtual, Number, XPolicy};
use crate::store::clock::SystemClock;
use crate::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;

/// Slots each shard's expiry sweep examines per write command, so offline
/// use reclaims expired bindings a little at a time too.
const RECLAIM_BUDGET_PER_COMMAND: u32 = 1024;

/// What an offline command does to the directory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Reads only: the log is replayed into memory, nothing is written
    /// (close with `discard`).
    Read,
    /// Changes bindings in an existing directory. Refused on a cluster
    /// member's directory.
    Write,
    /// Writes bindings, creating the directory if it is not there. Refused
    /// on a cluster member's directory.
    Create,
}

/// Opens the directory for `access`.
pub(super) fn open(args: &StoreArgs, access: Access) -> Result<Store, Outcome> {
    let clock = Arc::new(SystemClock);
    let Some(data) = args.data.as_ref() else {
        return Err(Outcome::failure(
            "bad_request",
            "this command works on a data directory: give --data DIR",
        ));
    };
    if access != Access::Read {
        refuse_cluster_member(data)?;
    }
    let create = access == Access::Create;
    let result = if create {
        Store::open_or_create(data, args.shards, clock)
    } else {
        Store::open(data, clock)
    };
    let mut store = result.map_err(Outcome::from)?;
    // The tables hold the last checkpoint; the log holds what followed.
    // Offline commands see (and change) the state after its committed part
    // (`replication::recover`: on a one-member node, all of it). Their own
    // changes are not logged: they act on a stopped single node, and reach
    // the files through the checkpoint `close` takes.
    // The cold files' pages are checked on first touch: an offline command
    // reads few of them (`x700 check` reads them all).
    crate::server::apply::recover(&mut store)
        .map_err(|error| Outcome::failure("corrupt", &error))?;
    Ok(store)
}

/// A cluster member's tables change only through the cluster's log: an
/// offline write would make this member differ from the others for good.
fn refuse_cluster_member(data: &std::path::Path) -> Result<(), Outcome> {
    match crate::store::member_file::read(data) {
        Ok(None) => Ok(()),
        Ok(Some(ids)) => Err(Outcome::failure(
            "cluster_member",
            &format!(
                "{} is node {} of cluster {}: its tables change only through the cluster's \
                 log; write through a running member with --server ADDR",
                data.display(),
                ids.node_id,
                ids.cluster_id
            ),
        )),
        Err(error) => Err(Outcome::failure("corrupt", &error.to_string())),
    }
}

/// The outcome of a control or registry answer (`tenant`, `block`,
/// `pool`, `trace`): the fields of its JSON body on `ok`, else the status
/// with `refusal_text`'s words for it.
pub(super) fn json_answer(
    result: Result<(u8, String), crate::client::ClientError>,
    refusal_text: fn(u8) -> &'static str,
) -> Outcome {
    use crate::protocol::status;
    match result {
        Ok((status::OK, body)) => match serde_json::from_str::<Value>(&body) {
            Ok(Value::Object(fields)) => Outcome::ok(Value::Object(fields)),
            _ => Outcome::ok(json!({})),
        },
        Ok((code, _)) => Outcome::failure(status::name(code), refusal_text(code)),
        Err(error) => Outcome::failure("unreachable", &error.to_string()),
    }
}

/// Ends a read-only look: nothing is written.
fn discard(store: Store, outcome: Outcome) -> Outcome {
    store.discard();
    outcome
}

/// Closes the store, turning a failure into the outcome.
pub(super) fn close(store: Store, outcome: Outcome) -> Outcome {
    match store.close() {
        Ok(()) => outcome,
        Err(error) => Outcome::from(error),
    }
}

pub(super) fn policy(args: &StoreArgs) -> XPolicy {
    XPolicy {
        allow_legacy: args.allow_legacy_x,
    }
}

pub(super) fn invalid(error: impl Into<InvalidRequest>) -> Outcome {
    Outcome::from(WriteError::Invalid(error.into()))
}

pub(super) fn parse_direction(text: &str) -> Result<Direction, Outcome> {
    Direction::parse(text).ok_or_else(|| {
        Outcome::failure(
            "bad_request",
            &format!("direction {text:?} is not one of both, a2b, b2a"),
        )
    })
}

fn bind_request(
    common: &BindCommon,
    parties: impl FnOnce(Number) -> Result<Parties, Outcome>,
) -> Result<BindRequest, Outcome> {
    let Some(x) = common.x.as_deref() else {
        return Err(Outcome::failure(
            "bad_request",
            "give --x X (for AXB, or --area CODE for the node to choose X)",
        ));
    };
    let x = parse_virtual(x, policy(&common.store)).map_err(invalid)?;
    let a = parse_real(&common.a).map_err(invalid)?;
    Ok(BindRequest {
        x,
        parties: parties(a)?,
        tenant: common.tenant,
        order: OrderRef::new(common.order.as_bytes()).map_err(invalid)?,
        ttl_s: common.ttl_s,
        direction: parse_direction(&common.direction)?,
        recording: common.record,
    })
}

/// `x700 bind axb|axn|axe`.
pub fn bind(command: &BindCommand) -> Outcome {
    if let BindCommand::Axb(args) = command {
        if let Some(area) = &args.area {
            return super::pool::bind_auto(args, area);
        }
    }
    let (common, request) = match command {
        BindCommand::Axb(BindAxbArgs { common, b, .. }) => (
            common,
            bind_request(common, |a| {
                Ok(Parties::Axb {
                    a,
                    b: parse_real(b).map_err(invalid)?,
                })
            }),
        ),
        BindCommand::Axn(BindAxnArgs {
            common,
            default_callee,
        }) => (
            common,
            bind_request(common, |a| {
                let default_callee = default_callee
                    .as_deref()
                    .map(parse_real)
                    .transpose()
                    .map_err(invalid)?;
                Ok(Parties::Axn { a, default_callee })
            }),
        ),
        BindCommand::Axe(BindAxeArgs { common, ext }) => (
            common,
            bind_request(common, |a| {
                Ok(Parties::Axe {
                    a,
                    extension: parse_extension(ext).map_err(invalid)?,
                })
            }),
        ),
    };
    let request = match request {
        Ok(request) => request,
        Err(outcome) => return outcome,
    };
    if let Some(server) = &common.store.server {
        return super::remote::bind(server, &common.store, &request);
    }
    let mut store = match open(&common.store, Access::Create) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    store.reclaim_expired(RECLAIM_BUDGET_PER_COMMAND);
    let outcome = match store.bind(&request) {
        Ok(bound) => Outcome::ok(json!({
            "binding_id": bound.binding_id.0,
            "created": bound.created,
            "mode": request.parties.mode().as_str(),
            "x": request.x.digits(),
            "expires_at_s": bound.expires_at_s,
        })),
        Err(error) => Outcome::from(error),
    };
    close(store, outcome)
}

/// `x700 lookup`.
pub fn lookup(args: &LookupArgs) -> Outcome {
    let query = match lookup_query(args) {
        Ok(query) => query,
        Err(outcome) => return outcome,
    };
    if let Some(server) = &args.store.server {
        return super::remote::lookup(server, &args.store, &query);
    }
    let store = match open(&args.store, Access::Read) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    let outcome = lookup_outcome(&store.lookup(&query));
    discard(store, outcome)
}

/// A lookup whose numbers do not parse is answered `bad_number`, as a
/// switch would be answered.
fn lookup_query(args: &LookupArgs) -> Result<LookupQuery, Outcome> {
    let bad = |error: crate::number::NumberError| {
        Outcome::with_status("bad_number", json!({ "error": error.to_string() }), true)
    };
    Ok(LookupQuery {
        caller: parse_real(&args.caller).map_err(bad)?,
        x: parse_virtual(&args.called, policy(&args.store)).map_err(bad)?,
        extension: args
            .ext
            .as_deref()
            .map(parse_extension)
            .transpose()
            .map_err(bad)?
            .unwrap_or(Number::NONE),
    })
}

/// `x700 unbind`.
pub fn unbind(args: &UnbindArgs) -> Outcome {
    let target = match (&args.id, &args.x) {
        (Some(id), _) => Ok(Target::Id(BindingId(*id))),
        (None, Some(x)) => unbind_party(args, x),
        (None, None) => Err(Outcome::failure(
            "bad_request",
            "give --id, or --x with --party or --ext",
        )),
    };
    let target = match target {
        Ok(target) => target,
        Err(outcome) => return outcome,
    };
    if let Some(server) = &args.store.server {
        let body = match target {
            Target::Id(id) => crate::protocol::UnbindBody::Id(id),
            Target::Party(x, party) => crate::protocol::UnbindBody::Party { x, party },
        };
        return super::remote::unbind(server, &args.store, &body);
    }
    let mut store = match open(&args.store, Access::Write) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    store.reclaim_expired(RECLAIM_BUDGET_PER_COMMAND);
    let now_s = store.now_s();
    let result = match target {
        Target::Id(id) => store.unbind(id),
        Target::Party(x, party) => store.unbind_by_party(x, party),
    };
    let outcome = match result {
        Ok(binding) => Outcome::binding(&binding, now_s),
        Err(error) => Outcome::from(error),
    };
    close(store, outcome)
}

enum Target {
    Id(BindingId),
    Party(Number, Number),
}

fn unbind_party(args: &UnbindArgs, x: &str) -> Result<Target, Outcome> {
    let x = parse_virtual(x, policy(&args.store)).map_err(invalid)?;
    let party = match (&args.party, &args.ext) {
        (Some(party), None) => parse_real(party).map_err(invalid)?,
        (None, Some(ext)) => parse_extension(ext).map_err(invalid)?,
        _ => {
            return Err(Outcome::failure(
                "bad_request",
                "with --x, give exactly one of --party or --ext",
            ))
        }
    };
    Ok(Target::Party(x, party))
}

/// `x700 update`.
pub fn update(args: &UpdateArgs) -> Outcome {
    let update = match update_of(args) {
        Ok(update) => update,
        Err(outcome) => return outcome,
    };
    if update == Update::default() {
        return Outcome::failure(
            "bad_request",
            "nothing to update: give --ttl-s, --direction, --record or --b",
        );
    }
    if let Some(server) = &args.store.server {
        return super::remote::update(server, &args.store, BindingId(args.id), &update);
    }
    let mut store = match open(&args.store, Access::Write) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    store.reclaim_expired(RECLAIM_BUDGET_PER_COMMAND);
    let now_s = store.now_s();
    let outcome = match store.update(BindingId(args.id), &update) {
        Ok(binding) => Outcome::binding(&binding, now_s),
        Err(error) => Outcome::from(error),
    };
    close(store, outcome)
}

fn update_of(args: &UpdateArgs) -> Result<Update, Outcome> {
    Ok(Update {
        ttl_s: args.ttl_s,
        direction: args.direction.as_deref().map(parse_direction).transpose()?,
        recording: args.record,
        b: args
            .b
            .as_deref()
            .map(parse_real)
            .transpose()
            .map_err(invalid)?,
    })
}

/// `x700 query`.
pub fn query(args: &QueryArgs) -> Outcome {
    if let Some(server) = &args.store.server {
        return super::remote::query(server, &args.store, BindingId(args.id));
    }
    let store = match open(&args.store, Access::Read) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    let now_s = store.now_s();
    let outcome = match store.query(BindingId(args.id)) {
        Some(binding) => Outcome::binding(&binding, now_s),
        None => Outcome::from(WriteError::NotFound),
    };
    discard(store, outcome)
}

/// `x700 stats`.
pub fn stats(args: &StatsArgs) -> Outcome {
    if let Some(server) = &args.store.server {
        return super::remote::stats(server, &args.store);
    }
    let store = match open(&args.store, Access::Read) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    let outcome = match stats_fields(&store) {
        Ok(fields) => Outcome::ok(fields),
        Err(error) => Outcome::from(error),
    };
    discard(store, outcome)
}

/// The figures `stats` prints (also used by `demo`).
pub(super) fn stats_fields(store: &Store) -> Result<Value, crate::table::TableError> {
    let stats = store.stats()?;
    let per_binding = |bytes: u64| {
        if stats.bindings_live == 0 {
            Value::Null
        } else {
            // Sizes far below 2^52: exact in f64.
            #[allow(clippy::cast_precision_loss)]
            let ratio = bytes as f64 / stats.bindings_live as f64;
            Value::from((ratio * 100.0).round() / 100.0)
        }
    };
    Ok(json!({
        "bindings_live": stats.bindings_live,
        "shards": stats.shards,
        "bytes_per_binding": per_binding(stats.lookup_bytes),
        "disk_bytes_per_binding": per_binding(stats.disk_bytes),
        "lookup_bytes": stats.lookup_bytes,
        "disk_bytes": stats.disk_bytes,
        "records_used": stats.records_used,
        "index_entries": stats.index_entries,
        "overflow_buckets_live": stats.overflow_buckets_live,
        "data": store.dir().display().to_string(),
    }))
}

/// `x700 check`: verify every record and index entry, and that group and
/// others can reach nothing in the directory (it holds personal data).
/// Loose permissions fail the check (status `loose_permissions`, exit 1).
pub fn check(args: &StatsArgs) -> Outcome {
    let store = match open(&args.store, Access::Read) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    let started = std::time::Instant::now();
    let mut outcome = match store.verify() {
        Ok(()) => Outcome::ok(json!({
            "bindings_live": store.stats().map(|s| s.bindings_live).unwrap_or(0),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })),
        Err(error) => Outcome::from(error),
    };
    let (permissions, private) = permissions_report(store.dir(), args.store.json);
    outcome.object.insert("permissions".into(), permissions);
    if !private && outcome.success {
        outcome
            .object
            .insert("status".into(), Value::from("loose_permissions"));
        outcome.success = false;
    }
    discard(store, outcome)
}

/// `check`'s permissions finding, and whether the directory is private. In
/// JSON: `{"ok": bool, "loose": [{"path", "mode", "wanted"}]}`; in text a
/// line per loose path on stderr and a count in the summary.
fn permissions_report(dir: &std::path::Path, json: bool) -> (Value, bool) {
    let loose = match crate::store::lock::loose_permissions(dir) {
        Ok(loose) => loose,
        Err(error) => {
            let error = format!("cannot read the permissions of {}: {error}", dir.display());
            return (json!({ "ok": false, "error": error }), false);
        }
    };
    let private = loose.is_empty();
    if !json {
        for path in &loose {
            eprintln!(
                "loose permissions: {} mode {} (want {})",
                path.path.display(),
                path.mode_text(),
                path.wanted_mode_text()
            );
        }
        let summary = if private {
            "ok".to_string()
        } else {
            format!(
                "{} path(s) open to group or others (listed above)",
                loose.len()
            )
        };
        return (Value::from(summary), private);
    }
    let paths: Vec<Value> = loose
        .iter()
        .map(|path| {
            json!({
                "path": path.path.display().to_string(),
                "mode": path.mode_text(),
                "wanted": path.wanted_mode_text(),
            })
        })
        .collect();
    (json!({ "ok": private, "loose": paths }), private)
}
