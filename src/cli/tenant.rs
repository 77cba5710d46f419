//! `x700 tenant ...` and `x700 block ...`: the registry of tenants and
//! blocklists, against a running node (`--server`, as admin; a platform may
//! show its own tenant) or offline on a stopped single node's directory
//! (`--data`). A running node logs every change and replicates it.

use super::args::{BlockArgs, BlockCommand, TenantAddArgs, TenantArgs, TenantCommand};
use super::commands::{self, Access};
use super::output::Outcome;
use crate::client::Client;
use crate::number::parse_real;
use crate::protocol::codec::control::{ControlRequest, PutMode};
use crate::protocol::{status, Role};

/// Runs a tenant command.
pub fn tenant(command: &TenantCommand) -> Outcome {
    match command {
        TenantCommand::Add(add) => put(add, PutMode::Add),
        TenantCommand::Set(set) => put(set, PutMode::Set),
        TenantCommand::Suspend(args) => status_change(args, true),
        TenantCommand::Resume(args) => status_change(args, false),
        TenantCommand::Show(args) => show(&args.store, Some(args.tenant)),
        TenantCommand::List(args) => show(&args.store, None),
    }
}

/// Runs a block command.
pub fn block(command: &BlockCommand) -> Outcome {
    let (args, add) = match command {
        BlockCommand::Add(args) => (args, true),
        BlockCommand::Remove(args) => (args, false),
    };
    block_change(args, add)
}

fn put(args: &TenantAddArgs, mode: PutMode) -> Outcome {
    if mode == PutMode::Add && args.token.is_empty() {
        return Outcome::failure(
            "bad_request",
            "a new tenant needs a credential: --token TOKEN",
        );
    }
    if !args.token.is_empty() && args.token.len() < 16 && !args.allow_short_tokens {
        return Outcome::failure(
            "bad_request",
            "a credential must be at least 16 bytes (--allow-short-tokens for tests)",
        );
    }
    let request = ControlRequest::TenantPut {
        tenant: args.tenant,
        mode,
        max_live: args.max_live,
        binds_per_s: args.binds_per_s,
        lookups_per_s: args.lookups_per_s,
        x_lookups_per_s: args.x_lookups_per_s,
        token: args.token.as_bytes(),
        hashed: false,
    };
    let store = args.store();
    run(&store, &request)
}

fn status_change(args: &TenantArgs, suspended: bool) -> Outcome {
    let request = ControlRequest::TenantStatus {
        tenant: args.tenant,
        suspended,
    };
    run(&args.store, &request)
}

fn block_change(args: &BlockArgs, add: bool) -> Outcome {
    let caller = match parse_real(&args.caller) {
        Ok(caller) => caller,
        Err(error) => return commands::invalid(error),
    };
    let request = ControlRequest::Block {
        tenant: args.tenant,
        caller,
        add,
    };
    run(&args.store, &request)
}

/// Sends `request` to the node, or applies it to the directory.
fn run(store_args: &super::args::StoreArgs, request: &ControlRequest<'_>) -> Outcome {
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
    let outcome = store.control().apply_now(request, store.now_s());
    let result = commands::json_answer(Ok((outcome.status, outcome.body)), refusal_text);
    commands::close(store, result)
}

fn refusal_text(code: u8) -> &'static str {
    match code {
        status::UNKNOWN_TENANT => "no such tenant",
        status::TENANT_EXISTS => "the tenant exists already (x700 tenant set changes it)",
        status::CONFLICT => "that credential belongs to another tenant",
        status::UNAUTHORISED => "this credential may not do that",
        status::UNKNOWN_OPCODE => "the node does not know tenants (protocol version 1)",
        status::BAD_NUMBER => "the caller is not a valid number",
        status::CAPACITY => "the registry is full",
        _ => "refused",
    }
}

fn show(store_args: &super::args::StoreArgs, tenant: Option<u32>) -> Outcome {
    let (code, body) = if let Some(server) = &store_args.server {
        let connected: Result<Client, Outcome> =
            super::remote::connect(server, store_args, Role::Admin);
        match connected.map(|mut client| client.tenant_show(tenant)) {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Outcome::failure("unreachable", &error.to_string()),
            Err(outcome) => return outcome,
        }
    } else {
        let store = match commands::open(store_args, Access::Read) {
            Ok(store) => store,
            Err(outcome) => return outcome,
        };
        let registry = store.control().registry();
        store.discard();
        match tenant {
            Some(t) if registry.tenant(t).is_none() => (status::UNKNOWN_TENANT, String::new()),
            Some(t) => (status::OK, registry.tenant_json(t)),
            None => (status::OK, registry.list_json()),
        }
    };
    commands::json_answer(Ok((code, body)), refusal_text)
}
