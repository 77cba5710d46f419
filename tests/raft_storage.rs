//! Runs openraft's own storage test suite (`openraft::testing::Suite`,
//! openraft 0.9.25) against x700's log storage (segment files, group-commit
//! fsync) and state machine (the shard tables), each test on a fresh data
//! directory. `transfer_snapshot` is left out: installing another node's
//! snapshot arrives with multi-node replication, and a one-member cluster
//! never does it.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;
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
