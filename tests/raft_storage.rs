//! Runs openraft's own storage test suite (`openraft::testing::Suite`,
//! openraft 0.9.25) against x700's log storage (segment files, group-commit
//! fsync, the saved commit index) and state machine (the shard tables),
//! each test on a fresh data directory; then shows, on logs written record
//! by record, that recovery applies only committed entries: up to the
//! stored commit index (clamped to the log) on a multi-member membership,
//! and the whole durable log on a one-member one. `transfer_snapshot` is
//! left out: installing another node's snapshot arrives with multi-node
//! replication, and a one-member cluster never does it.

mod common;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{BasicNode, Membership, StorageError};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use x700::binding::LookupResult;
use x700::log::{LogPosition, LogRecord, RecordKind};
use x700::protocol::codec::encode_bind;
use x700::replication::types::TypeConfig;
use x700::replication::{storage, LogStore, StateMachine};
use x700::server::apply::LocalApplier;
use x700::store::clock::FakeClock;
use x700::store::Store;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut store =
            Store::create(dir.path(), 2, Arc::new(FakeClock::new(1_800_000_000))).expect("store");
        let (log, recovered) = x700::server::apply::recover(&mut store).expect("recover");
        let set = store.split(1).pop().expect("one shard set");
        let applier = Arc::new(LocalApplier::new(set));
        let (log_store, state_machine) =
            storage(dir.path(), log, applier, &recovered).expect("storage");
        Ok((dir, log_store, state_machine))
    }
}

type Tests = Suite<TypeConfig, LogStore, StateMachine, Builder, tempfile::TempDir>;

fn run<F, Fu>(test: F)
where
    F: Fn(LogStore, StateMachine) -> Fu,
    Fu: std::future::Future<Output = Result<(), StorageError<u64>>>,
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(async {
            let (_dir, log_store, state_machine) = Builder.build().await?;
            test(log_store, state_machine).await
        })
        .unwrap();
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(Tests::$name);
            }
        )*
    };
}

suite!(
    last_membership_in_log_initial,
    last_membership_in_log,
    last_membership_in_log_multi_step,
    get_membership_initial,
    get_membership_from_log_and_empty_sm,
    get_membership_from_empty_log_and_sm,
    get_membership_from_log_le_sm_last_applied,
    get_membership_from_log_gt_sm_last_applied_1,
    get_membership_from_log_gt_sm_last_applied_2,
    get_initial_state_without_init,
    get_initial_state_membership_from_log_and_sm,
    get_initial_state_with_state,
    get_initial_state_last_log_gt_sm,
    get_initial_state_last_log_lt_sm,
    get_initial_state_log_ids,
    get_initial_state_re_apply_committed,
    save_vote,
    get_log_entries,
    limited_get_log_entries,
    try_get_log_entry,
    initial_logs,
    get_log_state,
    get_log_id,
    last_id_in_log,
    last_applied_state,
    purge_logs_upto_0,
    purge_logs_upto_5,
    purge_logs_upto_20,
    delete_logs_since_11,
    delete_logs_since_0,
    append_to_log,
    snapshot_meta,
    apply_single,
    apply_multiple,
);

// ---- recovery and the commit index ----

/// Entries after the membership entry, one bind each.
const BINDS: u64 = 6;
const NOW_S: u32 = 1_800_000_000;

fn position(index: u64, term: u64) -> LogPosition {
    LogPosition {
        index,
        term,
        leader: 1,
    }
}

fn bind_of(entry: u64) -> x700::protocol::codec::BindBody {
    common::axb(
        common::x(entry),
        &format!("138{entry:08}"),
        &format!("139{entry:08}"),
        "r",
    )
}

/// Writes a log by hand, as a node that crashed would leave it: entry 0
/// the membership of `voters`, entries 1..=BINDS one bind each (term 1),
/// all synced; then saves `committed` and leaves without a checkpoint.
fn crashed_node(dir: &Path, voters: &[u64], committed: Option<LogPosition>) {
    let mut store = Store::create(dir, 2, Arc::new(FakeClock::new(NOW_S))).expect("store");
    let (mut log, recovered) = x700::server::apply::recover(&mut store).expect("recover");
    assert_eq!(recovered.entries_replayed, 0);
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    let membership: Membership<u64, BasicNode> = Membership::new(vec![voters], None);
    let mut records = vec![LogRecord {
        index: 0,
        term: 1,
        leader: 1,
        kind: RecordKind::Membership,
        payload: serde_json::to_vec(&membership).expect("membership json"),
    }];
    for entry in 1..=BINDS {
        let mut frame = Vec::new();
        encode_bind(&mut frame, 1, &bind_of(entry));
        let mut batch = x700::replication::WriteBatch::new(NOW_S);
        assert!(batch.push(None, &frame));
        records.push(LogRecord {
            index: entry,
            term: 1,
            leader: 1,
            kind: RecordKind::Writes,
            payload: batch.encode(),
        });
    }
    for file in log.append(&records).expect("append") {
        file.sync_data().expect("sync");
    }
    log.save_committed(committed).expect("save committed");
}

/// Reopens the directory as a start does; returns what recovery did and
/// which of the binds the tables hold.
fn recover_again(dir: &Path) -> (x700::replication::Recovered, Vec<u64>) {
    let mut store = Store::open(dir, Arc::new(FakeClock::new(NOW_S))).expect("reopen");
    let (_log, recovered) = x700::server::apply::recover(&mut store).expect("recover");
    let bound = (1..=BINDS)
        .filter(|&entry| {
            let query = common::ask(&format!("138{entry:08}"), common::x(entry));
            matches!(store.lookup(&query), LookupResult::Route(_))
        })
        .collect();
    (recovered, bound)
}

/// Guards the bug of step 5: recovery replayed the whole log whatever was
/// committed. On a three-voter membership, entries past the stored commit
/// index stay in the log, unapplied, for Raft.
#[test]
fn a_multi_member_log_is_replayed_up_to_the_stored_commit_index() {
    let dir = tempfile::tempdir().unwrap();
    crashed_node(dir.path(), &[1, 2, 3], Some(position(3, 1)));
    let (recovered, bound) = recover_again(dir.path());
    assert_eq!(bound, vec![1, 2, 3]);
    assert_eq!(recovered.stored_committed, Some(position(3, 1)));
    assert_eq!(recovered.last_applied.map(|p| p.index), Some(3));
    assert_eq!(recovered.entries_left, BINDS - 3);
    assert_eq!(recovered.entries_past_committed, 0);
    // Nothing was applied past the index, so nothing was checkpointed past
    // it either: a second recovery leaves the same entries.
    let (again, bound) = recover_again(dir.path());
    assert_eq!(bound, vec![1, 2, 3]);
    assert_eq!(again.entries_left, BINDS - 3);
}

/// With no commit index stored at all (a crash before openraft saved one),
/// a multi-member log is left to Raft whole.
#[test]
fn a_multi_member_log_without_a_commit_index_is_left_to_raft() {
    let dir = tempfile::tempdir().unwrap();
    crashed_node(dir.path(), &[1, 2, 3], None);
    let (recovered, bound) = recover_again(dir.path());
    assert!(bound.is_empty(), "{bound:?}");
    assert_eq!(recovered.last_applied, None);
    assert_eq!(recovered.entries_left, BINDS + 1);
}

/// A one-member cluster is the whole quorum: every durable entry is
/// committed even when the stored index lags (it is saved without a sync,
/// so a power loss can leave it behind acknowledged writes).
#[test]
fn a_one_member_log_is_replayed_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    crashed_node(dir.path(), &[1], Some(position(2, 1)));
    let (recovered, bound) = recover_again(dir.path());
    assert_eq!(bound, (1..=BINDS).collect::<Vec<_>>());
    assert_eq!(recovered.last_applied.map(|p| p.index), Some(BINDS));
    assert_eq!(recovered.entries_past_committed, BINDS - 2);
    assert_eq!(recovered.entries_left, 0);
}

/// A stored commit index past the log's end (a follower saves it before
/// its appends are synced, then loses them) is clamped to the last entry;
/// one naming another term at its index is not trusted at all.
#[test]
fn a_stored_commit_index_is_clamped_to_the_log() {
    let past = tempfile::tempdir().unwrap();
    crashed_node(past.path(), &[1, 2, 3], Some(position(BINDS + 4, 1)));
    let (recovered, bound) = recover_again(past.path());
    assert_eq!(recovered.stored_committed, Some(position(BINDS, 1)));
    assert_eq!(bound, (1..=BINDS).collect::<Vec<_>>());
    assert_eq!(recovered.entries_left, 0);

    let other_term = tempfile::tempdir().unwrap();
    crashed_node(other_term.path(), &[1, 2, 3], Some(position(3, 2)));
    let (recovered, bound) = recover_again(other_term.path());
    assert_eq!(recovered.stored_committed, None);
    assert!(bound.is_empty(), "{bound:?}");
    assert_eq!(recovered.entries_left, BINDS + 1);
}
