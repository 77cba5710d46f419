//! The cluster as a member sees and changes it: its view (term, leader,
//! members and how far each has come), this member's lag behind the
//! leader, and membership changes (initialise, add, remove). Each is a
//! call into openraft on the replica's runtime.

use super::*;
use std::collections::BTreeMap;

/// The cluster as one member sees it (`Replica::status`).
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// This node.
    pub node_id: u64,
    /// The current term.
    pub term: u64,
    /// The leader, if one is known.
    pub leader_id: Option<u64>,
    /// The last log index applied here.
    pub applied_index: Option<u64>,
    /// Every member of the membership in force.
    pub members: Vec<MemberView>,
}

/// One member in a `ClusterView`.
#[derive(Clone, Debug)]
pub struct MemberView {
    /// Its id and addresses.
    pub member: Member,
    /// `leader`, `follower` (a voter) or `learner`.
    pub role: &'static str,
    /// The last index known to be in its log: this node's own, or, at the
    /// leader, each follower's replicated index; `None` if unknown here.
    pub matched_index: Option<u64>,
}

/// How far a member's tables trail the leader's commits (`Replica::lag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lag {
    /// Entries the leader had committed, as its last append said, that
    /// this member has not applied yet.
    pub entries: u64,
    /// Milliseconds since the last append from the leader (heartbeats
    /// come every 50 ms): what this member serves may miss writes
    /// committed since. `None` if no leader has reached it since start.
    pub ms: Option<u64>,
}

/// The lag rule: the leader (and a one-member node) lags by nothing; a
/// follower lags by the leader's last known commit index less its own
/// applied index, and by the time since the leader's last append.
fn lag(leads: bool, applied_index: u64, contact: Option<peer::LeaderContact>) -> Lag {
    if leads {
        return Lag {
            entries: 0,
            ms: Some(0),
        };
    }
    Lag {
        entries: contact.map_or(0, |c| c.commit_index.saturating_sub(applied_index)),
        ms: contact.map(|c| u64::try_from(c.at.elapsed().as_millis()).unwrap_or(u64::MAX)),
    }
}

/// The node-id rule of add-node, over the membership in force (each member
/// and whether it votes). Ids are never reused (an openraft pitfall: a
/// node that comes back empty under a voter's id has lost entries and votes
/// the others counted on), so an id that is a member is refused, with one
/// exception: a learner named again with the same addresses, which is how
/// an add-node that timed out before the learner caught up is retried (the
/// learner is then promoted).
fn admission(current: &[(Member, bool)], member: &Member) -> Result<(), String> {
    let id = member.id;
    for (existing, voter) in current {
        if existing.id == id {
            if *voter {
                return Err(format!(
                    "node {id} is already a member (a voter): node ids are never reused; a new \
                     or wiped node joins under a new id"
                ));
            }
            if existing != member {
                return Err(format!(
                    "node {id} is already a member (a learner at {}={}): node ids are never \
                     reused; a new or wiped node joins under a new id",
                    existing.raft_addr, existing.client_addr
                ));
            }
        }
    }
    Ok(())
}

impl Replica {
    /// The address peers reach this node at; `None` on a one-member node.
    pub fn raft_addr(&self) -> Option<std::net::SocketAddr> {
        self.peer_server.as_ref().map(peer::PeerServer::local_addr)
    }

    /// The transport's counters (handshakes refused either way, connections,
    /// failed requests).
    pub fn peer_stats(&self) -> Arc<PeerStats> {
        Arc::clone(&self.peer_stats)
    }

    /// Initialises a new cluster whose first voters are `members` (this node
    /// among them), as `x700 cluster init` does; run it on one member only.
    /// Fails if this node's log already holds a membership, or if a node id
    /// appears twice.
    pub fn initialize(&self, members: &[Member]) -> Result<(), String> {
        let mut nodes = BTreeMap::new();
        for member in members {
            if nodes.insert(member.id, member.node()).is_some() {
                return Err(format!("node id {} named twice", member.id));
            }
        }
        if !nodes.contains_key(&self.node_id) {
            return Err(format!(
                "this node ({}) is not among the members",
                self.node_id
            ));
        }
        self.runtime
            .block_on(self.raft.initialize(nodes))
            .map_err(|e| e.to_string())
    }

    /// The cluster as this node sees it: term, leader, and every member
    /// with its role and (at the leader) how far its log matches.
    pub fn status(&self) -> ClusterView {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let matched = metrics.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let role = if metrics.current_leader == Some(*id) {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                let matched_index = if *id == self.node_id {
                    metrics.last_log_index
                } else {
                    matched.get(id).and_then(|m| m.map(|log_id| log_id.index))
                };
                MemberView {
                    member: Member::of(*id, node),
                    role,
                    matched_index,
                }
            })
            .collect();
        ClusterView {
            node_id: self.node_id,
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            applied_index: metrics.last_applied.map(|log_id| log_id.index),
            members,
        }
    }

    /// The leader this node knows of, if any.
    pub fn leader_id(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The cluster's members as this node last applied or appended them.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| Member::of(*id, node))
            .collect()
    }

    /// Adds `member` as a learner (it receives the log, does not vote) and
    /// waits until it has caught up, when `wait` says so; at the leader only.
    pub fn add_learner(&self, member: &Member, wait: bool) -> Result<(), String> {
        self.runtime
            .block_on(self.raft.add_learner(member.id, member.node(), wait))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Refuses `member` for add-node if its id is taken in the membership
    /// in force (`admission`).
    pub fn check_new_member(&self, member: &Member) -> Result<(), String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let current: Vec<(Member, bool)> = membership
            .nodes()
            .map(|(id, node)| (Member::of(*id, node), voters.contains(id)))
            .collect();
        admission(&current, member)
    }

    /// Adds `member` as a learner, waits (up to `catch_up`) until its log
    /// matches the leader's, then makes it a voter; at the leader only. A
    /// member that does not catch up in time stays a learner, and the
    /// error says so.
    pub fn add_member(&self, member: &Member, catch_up: Duration) -> Result<(), String> {
        self.check_new_member(member)?;
        self.runtime.block_on(async {
            let added = tokio::time::timeout(
                catch_up,
                self.raft.add_learner(member.id, member.node(), true),
            )
            .await;
            match added {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => {
                    return Err(format!(
                        "node {} did not catch up within {} s: it stays a learner",
                        member.id,
                        catch_up.as_secs()
                    ))
                }
            }
            let promoted = std::collections::BTreeSet::from([member.id]);
            self.raft
                .change_membership(openraft::ChangeMembers::AddVoterIds(promoted), true)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    /// Removes node `id` from the cluster (voter or learner); at the leader
    /// only. Returns once the change is committed. The last voter cannot
    /// be removed.
    pub fn remove_member(&self, id: u64) -> Result<(), String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if !membership.nodes().any(|(node, _)| *node == id) {
            return Err(format!("node {id} is not a member"));
        }
        let is_voter = membership.voter_ids().any(|voter| voter == id);
        if is_voter && membership.voter_ids().count() == 1 {
            return Err(format!("node {id} is the last voter"));
        }
        let ids = std::collections::BTreeSet::from([id]);
        let change = if is_voter {
            openraft::ChangeMembers::RemoveVoters(ids)
        } else {
            openraft::ChangeMembers::RemoveNodes(ids)
        };
        // retain = false: a removed voter leaves the membership altogether.
        self.runtime
            .block_on(self.raft.change_membership(change, false))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Makes `voters` the cluster's voters (learners not named stay
    /// learners); at the leader only. Returns once the change is committed.
    pub fn change_voters(&self, voters: &[u64]) -> Result<(), String> {
        let voters: std::collections::BTreeSet<u64> = voters.iter().copied().collect();
        self.runtime
            .block_on(self.raft.change_membership(voters, true))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// How far this member's tables trail the leader's commits (`Lag`).
    pub fn lag(&self) -> Lag {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let applied_index = metrics.last_applied.map_or(0, |log_id| log_id.index);
        let leads = metrics.current_leader == Some(self.node_id);
        lag(leads, applied_index, self.peer_stats.leader_contact())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn member(id: u64, host: u8) -> Member {
        Member {
            id,
            raft_addr: format!("10.0.0.{host}:7800"),
            client_addr: format!("10.0.0.{host}:7700"),
        }
    }

    /// Guards the pitfall "never reuse a node id": add-node let a learner's
    /// id join again under another node's addresses.
    #[test]
    fn an_id_in_the_membership_is_refused_whatever_its_role() {
        let current = [
            (member(1, 1), true),
            (member(2, 2), true),
            (member(3, 3), false),
        ];
        let voter = admission(&current, &member(2, 9)).unwrap_err();
        assert!(
            voter.contains("node 2 is already a member (a voter)"),
            "{voter}"
        );
        let learner = admission(&current, &member(3, 9)).unwrap_err();
        assert!(
            learner.contains("node 3 is already a member (a learner"),
            "{learner}"
        );
        assert!(learner.contains("new id"), "{learner}");
        // The same learner again (a retried add-node) goes on to promote it.
        assert_eq!(admission(&current, &member(3, 3)), Ok(()));
        assert_eq!(admission(&current, &member(4, 4)), Ok(()));
    }

    #[test]
    fn the_leader_lags_by_nothing_whatever_it_last_heard() {
        let old = peer::LeaderContact {
            at: Instant::now(),
            commit_index: 900,
        };
        let lagging = lag(true, 10, Some(old));
        assert_eq!(
            lagging,
            Lag {
                entries: 0,
                ms: Some(0)
            }
        );
    }

    #[test]
    fn a_follower_lags_by_the_leaders_commits_it_has_not_applied() {
        let contact = peer::LeaderContact {
            at: Instant::now(),
            commit_index: 900,
        };
        assert_eq!(lag(false, 100, Some(contact)).entries, 800);
        // Applied past what the last append said (a later append is on
        // its way): no lag, never an underflow.
        assert_eq!(lag(false, 950, Some(contact)).entries, 0);
        assert!(lag(false, 100, Some(contact)).ms.is_some());
    }

    #[test]
    fn a_follower_no_leader_has_reached_has_no_measure_in_ms() {
        assert_eq!(
            lag(false, 0, None),
            Lag {
                entries: 0,
                ms: None
            }
        );
    }
}
