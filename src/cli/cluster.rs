//! `x700 cluster ...`: the admin opcodes CLUSTER_INIT, CLUSTER_STATUS,
//! CLUSTER_ADD_NODE, CLUSTER_REMOVE_NODE and CLUSTER_VERIFY
//! (docs/PROTOCOL.md section 7.9) against a running member. Membership
//! changes are made at the leader: sent elsewhere they answer NOT_LEADER
//! naming the leader, and the command goes there.

use super::args::{ClusterArgs, ClusterCommand};
use super::output::Outcome;
use crate::client::{Client, ClientError};
use crate::protocol::codec::decode_not_leader;
use crate::protocol::{opcode, status, Role};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long a membership change looks for the leader (an election takes
/// well under a second; a cluster without a quorum has none).
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long `verify` tries to find every member at one applied index (the
/// leader proposes an expiry sweep every second, so an idle cluster moves
/// too; replication takes milliseconds).
const VERIFY_WAIT: Duration = Duration::from_secs(10);
/// Pause between two attempts of either.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Runs a cluster command.
pub fn run(command: &ClusterCommand) -> Outcome {
    match command {
        ClusterCommand::Init(args) => {
            let text = args.members.join(" ");
            match call(
                &args.cluster,
                &args.cluster.server,
                opcode::CLUSTER_INIT,
                text.as_bytes(),
            ) {
                Ok((status::OK, _)) => status_of(&args.cluster),
                Ok((code, reason)) => failure(code, &reason),
                Err(outcome) => outcome,
            }
        }
        ClusterCommand::Status(args) => status_of(args),
        ClusterCommand::AddNode(args) => at_leader(
            &args.cluster,
            opcode::CLUSTER_ADD_NODE,
            args.member.as_bytes(),
        ),
        ClusterCommand::RemoveNode(args) => at_leader(
            &args.cluster,
            opcode::CLUSTER_REMOVE_NODE,
            &args.node_id.to_le_bytes(),
        ),
        ClusterCommand::Verify(args) => verify(args),
    }
}

fn status_of(args: &ClusterArgs) -> Outcome {
    match status_json(args, &args.server) {
        Ok(fields) => Outcome::ok(fields),
        Err(outcome) => outcome,
    }
}

fn status_json(args: &ClusterArgs, server: &str) -> Result<Value, Outcome> {
    match call(args, server, opcode::CLUSTER_STATUS, &[])? {
        (status::OK, body) => serde_json::from_slice::<Value>(&body)
            .map_err(|_| Outcome::failure("internal", "CLUSTER_STATUS answer is not JSON")),
        (code, reason) => Err(failure(code, &reason)),
    }
}

/// Sends a membership change to `--server`; on NOT_LEADER, to the leader
/// the answer names, or else the one CLUSTER_STATUS names (looking again
/// until `LEADER_WAIT`). Prints the cluster's status once the change is
/// committed.
fn at_leader(args: &ClusterArgs, op: u8, body: &[u8]) -> Outcome {
    let deadline = Instant::now() + LEADER_WAIT;
    let mut server = args.server.clone();
    loop {
        match call(args, &server, op, body) {
            Ok((status::OK, _)) => {
                return match status_json(args, &server) {
                    Ok(fields) => Outcome::ok(fields),
                    Err(outcome) => outcome,
                }
            }
            Ok((status::NOT_LEADER, hint)) => {
                if Instant::now() >= deadline {
                    return failure(status::NOT_LEADER, b"no leader found within 10 s");
                }
                // The answer names the leader; a node that knows none (an
                // election, or a server before this body) leaves it empty:
                // then ask the node first named where the leader is now.
                let named = decode_not_leader(&hint)
                    .map(|hint| hint.client_addr)
                    .filter(|address| !address.is_empty() && *address != server);
                let leader = named.or_else(|| {
                    status_json(args, &args.server)
                        .ok()
                        .and_then(|s| s["leader_addr"].as_str().map(str::to_string))
                });
                match leader {
                    Some(leader) if leader != server => server = leader,
                    _ => std::thread::sleep(RETRY_PAUSE),
                }
            }
            Ok((code, reason)) => return failure(code, &reason),
            Err(outcome) => return outcome,
        }
    }
}

/// One member's answer to CLUSTER_VERIFY.
struct Reading {
    id: u64,
    applied_index: u64,
    checksum: String,
}

/// Asks every member (from `--server`'s CLUSTER_STATUS) for its table
/// checksum, until all stand at one applied index; `agree` says whether
/// their checksums are equal. Exit 1 if they are not, or if no one index
/// was found within `VERIFY_WAIT`.
fn verify(args: &ClusterArgs) -> Outcome {
    let cluster = match status_json(args, &args.server) {
        Ok(fields) => fields,
        Err(outcome) => return outcome,
    };
    // A one-member node (no --raft) lists itself without addresses: it is
    // the node asked.
    let asked = cluster["node_id"].as_u64();
    let address_of = |member: &Value| -> Option<(u64, String)> {
        let id = member["id"].as_u64()?;
        match member["client_addr"].as_str() {
            Some("") | None if Some(id) == asked => Some((id, args.server.clone())),
            address => Some((id, address?.to_string())),
        }
    };
    let members: Vec<(u64, String)> = cluster["members"]
        .as_array()
        .map(|members| members.iter().filter_map(address_of).collect())
        .unwrap_or_default();
    if members.is_empty() {
        return Outcome::failure(
            "bad_request",
            "the node knows no members (not a cluster yet)",
        );
    }
    let deadline = Instant::now() + VERIFY_WAIT;
    loop {
        let error = match read_all(args, &members) {
            Ok(readings) => {
                let index = readings[0].applied_index;
                if readings.iter().all(|r| r.applied_index == index) {
                    return verdict(index, &readings);
                }
                let indexes: Vec<String> = readings
                    .iter()
                    .map(|r| format!("{}@{}", r.id, r.applied_index))
                    .collect();
                format!("members at different indexes: {}", indexes.join(" "))
            }
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            return Outcome::failure(
                "unavailable",
                &format!("no common applied index within 10 s: {error}"),
            );
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

fn verdict(index: u64, readings: &[Reading]) -> Outcome {
    let agree = readings.iter().all(|r| r.checksum == readings[0].checksum);
    let members: Vec<Value> = readings
        .iter()
        .map(|r| json!({ "id": r.id, "applied_index": r.applied_index, "checksum": r.checksum }))
        .collect();
    let fields = json!({
        "applied_index": index,
        "agree": agree,
        "diverged": diverged(readings),
        "members": members,
    });
    if agree {
        Outcome::ok(fields)
    } else {
        Outcome::with_status("diverged", fields, false)
    }
}

/// The members that differ: those outside the one largest group of equal
/// checksums (with three members and one changed, that one). When no group
/// is larger than every other (two members, or a three-way split), which
/// side is right cannot be told from the checksums: every member is named.
/// Empty when all agree.
fn diverged(readings: &[Reading]) -> Vec<u64> {
    let mut groups: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for reading in readings {
        *groups.entry(reading.checksum.as_str()).or_default() += 1;
    }
    if groups.len() <= 1 {
        return Vec::new();
    }
    let largest = groups.values().copied().max().unwrap_or(0);
    let mut at_largest = groups.iter().filter(|(_, &count)| count == largest);
    let reference = match (at_largest.next(), at_largest.next()) {
        (Some((checksum, _)), None) => Some(*checksum),
        _ => None,
    };
    readings
        .iter()
        .filter(|r| reference != Some(r.checksum.as_str()))
        .map(|r| r.id)
        .collect()
}

/// One reading per member, taken as close together as one pass allows.
fn read_all(args: &ClusterArgs, members: &[(u64, String)]) -> Result<Vec<Reading>, String> {
    let mut readings = Vec::with_capacity(members.len());
    for (id, address) in members {
        let (code, body) = call(args, address, opcode::CLUSTER_VERIFY, &[])
            .map_err(|outcome| format!("node {id}: {}", outcome.object["error"]))?;
        if code != status::OK {
            return Err(format!(
                "node {id}: {} {}",
                status::name(code),
                String::from_utf8_lossy(&body)
            ));
        }
        let fields: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("node {id}: CLUSTER_VERIFY answer is not JSON"))?;
        let (Some(applied_index), Some(checksum)) = (
            fields["applied_index"].as_u64(),
            fields["checksum"].as_str(),
        ) else {
            return Err(format!("node {id}: CLUSTER_VERIFY answer lacks fields"));
        };
        readings.push(Reading {
            id: *id,
            applied_index,
            checksum: checksum.to_string(),
        });
    }
    Ok(readings)
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

fn call(args: &ClusterArgs, server: &str, op: u8, body: &[u8]) -> Result<(u8, Vec<u8>), Outcome> {
    let unreachable = |error: ClientError| match error {
        ClientError::Refused(code) => Outcome::failure(status::name(code), &error.to_string()),
        other => Outcome::failure("unreachable", &other.to_string()),
    };
    let mut client = Client::connect(server, Role::Admin, &args.token).map_err(unreachable)?;
    if matches!(op, opcode::CLUSTER_ADD_NODE | opcode::CLUSTER_INIT) {
        // The leader answers once the new member caught up (up to 120 s,
        // a snapshot of tens of millions of bindings included).
        client
            .set_answer_timeout(MEMBERSHIP_ANSWER_WAIT)
            .map_err(unreachable)?;
    }
    client.request(op, body).map_err(unreachable)
}

/// How long `cluster add-node` and `cluster init` wait for the answer: the
/// leader's own wait for a new member to catch up (120 s) and some.
const MEMBERSHIP_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(150);

#[cfg(test)]
mod tests {
    use super::{diverged, Reading};

    fn readings(checksums: &[&str]) -> Vec<Reading> {
        (1u64..)
            .zip(checksums)
            .map(|(id, checksum)| Reading {
                id,
                applied_index: 7,
                checksum: (*checksum).to_string(),
            })
            .collect()
    }

    #[test]
    fn the_member_outside_the_largest_group_is_named() {
        assert!(diverged(&readings(&["aa", "aa", "aa"])).is_empty());
        assert_eq!(diverged(&readings(&["aa", "bb", "aa"])), vec![2]);
        assert_eq!(diverged(&readings(&["cc", "aa", "aa", "bb"])), vec![1, 4]);
    }

    #[test]
    fn without_a_largest_group_every_member_is_named() {
        assert_eq!(diverged(&readings(&["aa", "bb"])), vec![1, 2]);
        assert_eq!(diverged(&readings(&["aa", "bb", "cc"])), vec![1, 2, 3]);
        assert_eq!(
            diverged(&readings(&["aa", "aa", "bb", "bb"])),
            vec![1, 2, 3, 4]
        );
    }
}
