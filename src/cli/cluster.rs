//! `x700 cluster init` and `x700 cluster status`: the admin opcodes
//! CLUSTER_INIT and CLUSTER_STATUS (docs/PROTOCOL.md section 7.9) against a
//! running member.

use super::args::{ClusterArgs, ClusterCommand};
use super::output::Outcome;
use crate::client::{Client, ClientError};
use crate::protocol::{opcode, status, Role};
use serde_json::Value;

/// Runs a cluster command.
pub fn run(command: &ClusterCommand) -> Outcome {
    match command {
        ClusterCommand::Init(args) => {
            let text = args.members.join(" ");
            match call(&args.cluster, opcode::CLUSTER_INIT, text.as_bytes()) {
                Ok((status::OK, _)) => status_of(&args.cluster),
                Ok((code, reason)) => failure(code, &reason),
                Err(outcome) => outcome,
            }
        }
        ClusterCommand::Status(args) => status_of(args),
    }
}

fn status_of(args: &ClusterArgs) -> Outcome {
    match call(args, opcode::CLUSTER_STATUS, &[]) {
        Ok((status::OK, body)) => match serde_json::from_slice::<Value>(&body) {
            Ok(fields) => Outcome::ok(fields),
            Err(_) => Outcome::failure("internal", "CLUSTER_STATUS answer is not JSON"),
        },
        Ok((code, reason)) => failure(code, &reason),
        Err(outcome) => outcome,
    }
}

fn failure(code: u8, reason: &[u8]) -> Outcome {
    let reason = String::from_utf8_lossy(reason);
    let message = if reason.is_empty() {
        status::name(code).to_string()
    } else {
        reason.into_owned()
    };
    Outcome::failure(status::name(code), &message)
}

fn call(args: &ClusterArgs, op: u8, body: &[u8]) -> Result<(u8, Vec<u8>), Outcome> {
    let unreachable = |error: ClientError| match error {
        ClientError::Refused(code) => Outcome::failure(status::name(code), &error.to_string()),
        other => Outcome::failure("unreachable", &other.to_string()),
    };
    let mut client =
        Client::connect(args.server.as_str(), Role::Admin, &args.token).map_err(unreachable)?;
    client.request(op, body).map_err(unreachable)
}
