//! The data commands against a running node (`--server ADDR`): the same
//! JSON as offline, over the binary protocol with the client library.
//!
//! `bind`, `update`, `unbind`, `query` and `lookup` go through
//! `ClusterClient`: a write sent to a member that is not the leader follows
//! the `NOT_LEADER` answer to the leader by itself. `ADDR` may also list
//! several nodes separated by commas; lookups and queries then fail over
//! between them.

use super::args::StoreArgs;
use super::output::{lookup_outcome, Outcome};
use crate::binding::{BindRequest, Binding, BindingId, LookupQuery, Parties, Update};
use crate::client::{Client, ClientError, ClusterClient, WriteReply};
use crate::number::Number;
use crate::protocol::{status, BindBody, Role, UnbindBody};
use crate::server::config::role_of;
use crate::store::clock::{Clock, SystemClock};
use serde_json::{json, Value};

/// The role `--role` asks for, or `default_role`.
pub(super) fn role(args: &StoreArgs, default_role: Role) -> Result<Role, Outcome> {
    match args.role.as_deref() {
        None => Ok(default_role),
        Some(name) => role_of(name).ok_or_else(|| {
            Outcome::failure(
                "bad_request",
                &format!("role {name:?} is not switch, platform or admin"),
            )
        }),
    }
}

/// A session with the node, HELLO answered.
pub(super) fn connect(
    server: &str,
    args: &StoreArgs,
    default_role: Role,
) -> Result<Client, Outcome> {
    let role = role(args, default_role)?;
    Client::connect(server, role, &args.token).map_err(|e| client_failure(&e))
}

/// Sessions with the cluster `servers` names (commas between nodes).
fn connect_cluster(
    servers: &str,
    args: &StoreArgs,
    default_role: Role,
) -> Result<ClusterClient, Outcome> {
    let role = role(args, default_role)?;
    let nodes: Vec<&str> = servers.split(',').collect();
    ClusterClient::connect(&nodes, role, &args.token).map_err(|e| client_failure(&e))
}

fn client_failure(error: &ClientError) -> Outcome {
    match error {
        ClientError::Refused(code) => Outcome::failure(status::name(*code), &error.to_string()),
        _ => Outcome::failure("unreachable", &error.to_string()),
    }
}

fn refused(reply: &WriteReply) -> Outcome {
    let mut outcome = Outcome::failure(status::name(reply.status), status::name(reply.status));
    if let Some(id) = reply.binding_id {
        outcome
            .object
            .insert("binding_id".into(), Value::from(id.0));
    }
    outcome
}

/// `bind` over the wire.
pub fn bind(server: &str, args: &StoreArgs, request: &BindRequest) -> Outcome {
    let mut client = match connect_cluster(server, args, Role::Platform) {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    let (a, b) = match request.parties {
        Parties::Axb { a, b } => (a, b),
        Parties::Axn { a, default_callee } => (a, default_callee.unwrap_or(Number::NONE)),
        Parties::Axe { a, extension } => (a, extension),
    };
    let body = BindBody {
        mode: request.parties.mode(),
        x: request.x,
        a,
        b,
        tenant: request.tenant,
        ttl_s: request.ttl_s,
        direction: request.direction,
        recording: request.recording,
        order: request.order,
    };
    match client.bind(&body) {
        Ok(reply) if reply.status == status::OK => Outcome::ok(json!({
            "binding_id": reply.binding_id.map_or(0, |id| id.0),
            "created": reply.created.unwrap_or(true),
            "mode": request.parties.mode().as_str(),
            "x": request.x.digits(),
            "expires_at_s": reply.expires_at_s.unwrap_or(0),
        })),
        Ok(reply) => refused(&reply),
        Err(error) => client_failure(&error),
    }
}

/// `bind axb --area` over the wire: the node chooses X.
pub fn bind_auto(
    server: &str,
    args: &StoreArgs,
    auto: &crate::protocol::codec::auto::AutoBindBody,
) -> Outcome {
    let mut client = match connect_cluster(server, args, Role::Platform) {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    let area = crate::protocol::codec::auto::area_text(&auto.area);
    match client.bind_auto(auto) {
        Ok((reply, Some(x))) if reply.status == status::OK => Outcome::ok(json!({
            "binding_id": reply.binding_id.map_or(0, |id| id.0),
            "created": reply.created.unwrap_or(true),
            "mode": "axb",
            "x": x.digits(),
            "expires_at_s": reply.expires_at_s.unwrap_or(0),
            "area": area,
        })),
        Ok((reply, _)) if reply.status == status::POOL_EXHAUSTED => Outcome::failure(
            "pool_exhausted",
            &format!("no X of the tenant's pool is free for this pair in area {area} (or the fallback asked)"),
        ),
        Ok((reply, _)) => refused(&reply),
        Err(error) => client_failure(&error),
    }
}

/// `lookup` over the wire.
pub fn lookup(server: &str, args: &StoreArgs, query: &LookupQuery) -> Outcome {
    let mut client = match connect_cluster(server, args, Role::Switch) {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    match client.lookup(query) {
        Ok(result) => lookup_outcome(&result),
        Err(error) => client_failure(&error),
    }
}

fn binding_outcome(result: Result<Result<Binding, WriteReply>, ClientError>) -> Outcome {
    match result {
        Ok(Ok(binding)) => Outcome::binding(&binding, SystemClock.now_s()),
        Ok(Err(reply)) => refused(&reply),
        Err(error) => client_failure(&error),
    }
}

/// `unbind` over the wire.
pub fn unbind(server: &str, args: &StoreArgs, target: &UnbindBody) -> Outcome {
    match connect_cluster(server, args, Role::Platform) {
        Ok(mut client) => binding_outcome(client.unbind(target)),
        Err(outcome) => outcome,
    }
}

/// `update` over the wire.
pub fn update(server: &str, args: &StoreArgs, id: BindingId, update: &Update) -> Outcome {
    match connect_cluster(server, args, Role::Platform) {
        Ok(mut client) => binding_outcome(client.update(id, update)),
        Err(outcome) => outcome,
    }
}

/// `query` over the wire.
pub fn query(server: &str, args: &StoreArgs, id: BindingId) -> Outcome {
    match connect_cluster(server, args, Role::Platform) {
        Ok(mut client) => binding_outcome(client.query(id)),
        Err(outcome) => outcome,
    }
}

/// `stats` over the wire: the node's STATS JSON.
pub fn stats(server: &str, args: &StoreArgs) -> Outcome {
    let mut client = match connect(server, args, Role::Admin) {
        Ok(client) => client,
        Err(outcome) => return outcome,
    };
    match client.stats() {
        Ok((status::OK, text)) => match serde_json::from_str::<Value>(&text) {
            Ok(fields) => Outcome::ok(fields),
            Err(_) => Outcome::failure("internal", "STATS answer is not JSON"),
        },
        Ok((code, _)) => Outcome::failure(status::name(code), status::name(code)),
        Err(error) => client_failure(&error),
    }
}
