//! `x700 pool ...` and `x700 bind axb --area`: number pools and automatic
//! X selection, against a running node (`--server`) or offline on a
//! stopped single node's directory (`--data`), where the allocator is
//! rebuilt from the tables for the one command.

use super::args::{BindAxbArgs, PoolCommand, StoreArgs};
use super::commands::{self, Access};
use super::output::Outcome;
use crate::binding::{BindRequest, Direction, OrderRef, Parties};
use crate::number::{parse_real, Number};
use crate::pool::{x_value, AreaCode, Fallback, Province};
use crate::protocol::codec::auto::{AutoBindBody, Reach, AREA_BYTES};
use crate::protocol::codec::control::ControlRequest;
use crate::protocol::{status, BindBody, Role};
use crate::store::Store;
use serde_json::json;

/// Runs a pool command.
pub fn pool(command: &PoolCommand) -> Outcome {
    match command {
        PoolCommand::Add(args) => {
            let (first, last) = match parse_range(&args.range) {
                Ok(range) => range,
                Err(outcome) => return outcome,
            };
            let area = match area_field(&args.area) {
                Ok(area) => area,
                Err(outcome) => return outcome,
            };
            let province = match args.province.as_deref().map(Province::parse) {
                None => 0,
                Some(Some(province)) => province.code(),
                Some(None) => {
                    return Outcome::failure(
                        "bad_request",
                        &format!("{:?} is not a province name", args.province),
                    )
                }
            };
            if AreaCode::parse(&args.area).is_some_and(|a| a.province() == Province::Unknown)
                && province == 0
            {
                return Outcome::failure(
                    "bad_request",
                    &format!(
                        "area {} has no default province: give --province",
                        args.area
                    ),
                );
            }
            let request = ControlRequest::PoolAdd {
                tenant: args.tenant,
                first,
                last,
                area,
                province,
            };
            control(&args.store, &request)
        }
        PoolCommand::Remove(args) => {
            let (first, last) = match parse_range(&args.range) {
                Ok(range) => range,
                Err(outcome) => return outcome,
            };
            let request = ControlRequest::PoolRemove {
                tenant: args.tenant,
                first,
                last,
                force: args.force,
            };
            control(&args.store, &request)
        }
        PoolCommand::Show(args) => show(&args.store, args.tenant),
    }
}

/// `FIRST-LAST` as two 700 numbers' values.
fn parse_range(text: &str) -> Result<(u64, u64), Outcome> {
    let bad = || {
        Outcome::failure(
            "bad_request",
            &format!("range {text:?} is not FIRST-LAST, two 15-digit 700 numbers"),
        )
    };
    let (first, last) = text.split_once('-').ok_or_else(bad)?;
    let value = |t: &str| {
        crate::number::parse_virtual(t.trim(), crate::number::XPolicy::default())
            .ok()
            .and_then(x_value)
    };
    let (first, last) = (value(first).ok_or_else(bad)?, value(last).ok_or_else(bad)?);
    if first > last {
        return Err(Outcome::failure(
            "bad_request",
            &format!("range {text:?} ends before it starts"),
        ));
    }
    Ok((first, last))
}

/// An area code as the wire carries it.
fn area_field(text: &str) -> Result<[u8; AREA_BYTES], Outcome> {
    if AreaCode::parse(text).is_none() || text.len() > AREA_BYTES {
        return Err(Outcome::failure(
            "bad_request",
            &format!("area {text:?} is not a 3- or 4-digit area code"),
        ));
    }
    let mut field = [0u8; AREA_BYTES];
    field[..text.len()].copy_from_slice(text.as_bytes());
    Ok(field)
}

/// Sends a pool change to the node, or applies it to the directory.
fn control(store_args: &StoreArgs, request: &ControlRequest<'_>) -> Outcome {
    if let Some(server) = &store_args.server {
        let mut client = match super::remote::connect(server, store_args, Role::Admin) {
            Ok(client) => client,
            Err(outcome) => return outcome,
        };
        return commands::json_answer(client.control(request), refusal_text);
    }
    let store = match commands::open(store_args, Access::Write) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    rebuild(&store);
    if let ControlRequest::PoolRemove {
        first,
        last,
        force: false,
        ..
    } = *request
    {
        let in_use = store
            .control()
            .with_allocator(|a| a.in_use(first, last))
            .unwrap_or(0);
        if in_use > 0 {
            store.discard();
            return Outcome::failure(
                "in_use",
                &format!("{in_use} numbers of the range are in live bindings (--force removes it anyway)"),
            );
        }
    }
    let outcome = store.control().apply_now(request, store.now_s());
    commands::close(
        store,
        commands::json_answer(Ok((outcome.status, outcome.body)), refusal_text),
    )
}

fn rebuild(store: &Store) {
    store.control().rebuild(
        crate::pool::AllocConfig::default(),
        store.shard_set().owned(),
    );
}

fn refusal_text(code: u8) -> &'static str {
    match code {
        status::UNKNOWN_TENANT => "no such tenant",
        status::CONFLICT => "the range overlaps a range of a pool",
        status::NOT_FOUND => "the tenant has no such range (give it exactly as added)",
        status::IN_USE => "numbers of the range are in live bindings (--force removes it anyway)",
        status::CAPACITY => "too many ranges",
        status::BAD_REQUEST => "the range or area is not valid (at most 100,000,000 numbers)",
        status::UNAUTHORISED => "this credential may not do that",
        _ => "refused",
    }
}

fn show(store_args: &StoreArgs, tenant: u32) -> Outcome {
    if let Some(server) = &store_args.server {
        let mut client = match super::remote::connect(server, store_args, Role::Admin) {
            Ok(client) => client,
            Err(outcome) => return outcome,
        };
        return commands::json_answer(client.pool_show(tenant), refusal_text);
    }
    let store = match commands::open(store_args, Access::Read) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    rebuild(&store);
    let known = store.control().registry().tenant(tenant).is_some();
    let json = store.control().pool_json(tenant);
    store.discard();
    if known {
        commands::json_answer(Ok((status::OK, json)), refusal_text)
    } else {
        commands::json_answer(Ok((status::UNKNOWN_TENANT, String::new())), refusal_text)
    }
}

/// `x700 bind axb --area CODE [--fallback province|any]`.
pub fn bind_auto(args: &BindAxbArgs, area_text: &str) -> Outcome {
    let common = &args.common;
    let area = match area_field(area_text) {
        Ok(area) => area,
        Err(outcome) => return outcome,
    };
    let reach = match args.fallback.as_deref() {
        None => Reach::Area,
        Some("province") => Reach::Province,
        Some("any") => Reach::Any,
        Some(other) => {
            return Outcome::failure(
                "bad_request",
                &format!("fallback {other:?} is not province or any"),
            )
        }
    };
    let parsed = (|| {
        Ok::<_, Outcome>((
            parse_real(&common.a).map_err(commands::invalid)?,
            parse_real(&args.b).map_err(commands::invalid)?,
            OrderRef::new(common.order.as_bytes()).map_err(commands::invalid)?,
            commands::parse_direction(&common.direction)?,
        ))
    })();
    let (a, b, order, direction) = match parsed {
        Ok(parsed) => parsed,
        Err(outcome) => return outcome,
    };
    let bind = BindBody {
        mode: crate::binding::Mode::Axb,
        x: Number::NONE,
        a,
        b,
        tenant: common.tenant,
        ttl_s: common.ttl_s,
        direction,
        recording: common.record,
        order,
    };
    if let Some(server) = &common.store.server {
        return super::remote::bind_auto(
            server,
            &common.store,
            &AutoBindBody { bind, area, reach },
        );
    }
    bind_auto_offline(args, bind, area_text, reach, direction)
}

fn bind_auto_offline(
    args: &BindAxbArgs,
    bind: BindBody,
    area_text: &str,
    reach: Reach,
    direction: Direction,
) -> Outcome {
    let mut store = match commands::open(&args.common.store, Access::Create) {
        Ok(store) => store,
        Err(outcome) => return outcome,
    };
    rebuild(&store);
    let now_s = store.now_s();
    let control = std::sync::Arc::clone(store.control());
    let registry = control.registry();
    let Some(area) = AreaCode::parse(area_text) else {
        store.discard();
        return Outcome::failure("bad_request", "bad area");
    };
    let fallback = match reach {
        Reach::Area => Fallback::None,
        Reach::Province => Fallback::Province,
        Reach::Any => Fallback::Any,
    };
    let chosen =
        control.with_allocator(
            |allocator| match allocator.x_of_pair(bind.a, bind.b, now_s) {
                Some(x) => Ok(x),
                None => allocator.choose(
                    registry.pools(),
                    bind.tenant,
                    &area,
                    fallback,
                    bind.a,
                    bind.b,
                    now_s,
                ),
            },
        );
    let x = match chosen {
        Some(Ok(x)) => x,
        _ => {
            store.discard();
            return Outcome::failure(
                "pool_exhausted",
                &format!(
                    "no X of tenant {}'s pool is free for this pair in area {area_text}",
                    bind.tenant
                ),
            );
        }
    };
    let request = BindRequest {
        x,
        parties: Parties::Axb {
            a: bind.a,
            b: bind.b,
        },
        tenant: bind.tenant,
        order: bind.order,
        ttl_s: bind.ttl_s,
        direction,
        recording: bind.recording,
    };
    let outcome = match store.bind(&request) {
        Ok(bound) => Outcome::ok(json!({
            "binding_id": bound.binding_id.0,
            "created": bound.created,
            "mode": "axb",
            "x": x.digits(),
            "expires_at_s": bound.expires_at_s,
            "area": area_text,
        })),
        Err(error) => Outcome::from(error),
    };
    commands::close(store, outcome)
}
