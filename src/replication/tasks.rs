//! The replica's background tasks on its runtime: the proposer (write
//! batches into openraft, answers split back to their loops), and
//! housekeeping (sweep entries, checkpoints when due, recovery from a full
//! disk).

use super::*;

/// Takes a checkpoint and waits until openraft holds one at or past what
/// is applied now, or until this one failed (the state machine keeps the
/// previous checkpoint and counts the failure in `checkpoints`).
pub(super) async fn checkpoint_now(
    raft: &Raft<types::TypeConfig>,
    checkpoints: &CheckpointStats,
) -> Result<(), String> {
    let applied = raft.metrics().borrow().last_applied;
    let Some(applied) = applied else {
        return Ok(());
    };
    let done = |raft: &Raft<types::TypeConfig>| {
        raft.metrics()
            .borrow()
            .snapshot
            .is_some_and(|s| s.index >= applied.index)
    };
    if done(raft) {
        return Ok(());
    }
    let failures = checkpoints.failures.load(Ordering::SeqCst);
    raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut metrics = raft.metrics();
    loop {
        // A later entry may have been included: any snapshot at or past
        // `applied` will do.
        if done(raft) {
            return Ok(());
        }
        if checkpoints.failures.load(Ordering::SeqCst) != failures {
            return Err("checkpoint failed; the previous one and the log are kept".into());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("checkpoint did not complete".into());
        }
        // The failure counter is not in openraft's metrics: look again at
        // least every 50 ms.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await
        {
            return Err("openraft stopped before the checkpoint completed".into());
        }
    }
}

/// Entries this node has handed to openraft and not yet heard back about.
/// openraft 0.9 makes each append durable before it takes the next, so
/// everything that arrives meanwhile is merged into the next entry: one
/// append, one `fdatasync`, one apply for all of it (group commit at the
/// proposal level). Two in flight keep the next entry ready while one syncs.
const ENTRIES_IN_FLIGHT_MAX: usize = 2;

pub(super) async fn propose(
    raft: Raft<types::TypeConfig>,
    mut inbox: tokio::sync::mpsc::Receiver<Proposal>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(ENTRIES_IN_FLIGHT_MAX));
    let mut carried: Option<Proposal> = None;
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(proposal) => proposal,
            None => match inbox.recv().await {
                Some(proposal) => proposal,
                None => return,
            },
        };
        // Merge whatever else is waiting, up to one batch's bytes.
        let mut merged = first.batch;
        let mut parts = vec![(merged.count, first.done)];
        while let Ok(next) = inbox.try_recv() {
            if !merged.append(&next.batch) {
                carried = Some(next);
                break;
            }
            parts.push((next.batch.count, next.done));
        }
        match raft.client_write_ff(merged).await {
            Ok(receiver) => {
                tokio::spawn(async move {
                    let outcome = match receiver.await {
                        Ok(Ok(response)) => Ok(response.data),
                        Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(forward))) => {
                            Err(Refusal::NotLeader(forward.leader_id))
                        }
                        Ok(Err(_)) | Err(_) => Err(Refusal::Stopped),
                    };
                    drop(permit);
                    split_answers(outcome, parts);
                });
            }
            Err(_) => {
                drop(permit);
                split_answers(Err(Refusal::Stopped), parts);
            }
        }
    }
}

/// Hands each merged proposal its own answers (one frame per write, in
/// order).
fn split_answers(outcome: Result<Answers, Refusal>, parts: Vec<(u32, Done)>) {
    let frames = match outcome {
        Ok(Answers(frames)) => frames,
        Err(refusal) => {
            for (_, done) in parts {
                done(Err(refusal));
            }
            return;
        }
    };
    let mut at = 0usize;
    for (count, done) in parts {
        let start = at;
        for _ in 0..count {
            let length = frames
                .get(at..at + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if length < crate::protocol::frame::HEADER_BYTES || at + length > frames.len() {
                break;
            }
            at += length;
        }
        done(Ok(Answers(frames[start..at].to_vec())));
    }
}

/// After a failed checkpoint, the next waits this long: each attempt
/// copies every dirty page, and a full disk does not empty in 100 ms.
const CHECKPOINT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Whether a checkpoint is due: `checkpoint_interval` passed with entries
/// applied since the last one, or the log grew by `checkpoint_log_bytes`
/// since it. Growth, not size: with a log margin the log never shrinks
/// below the margin, which may itself hold more than `checkpoint_log_bytes`,
/// and a size test would then checkpoint at every tick.
fn checkpoint_due(
    options: &ReplicaOptions,
    since_checkpoint: Duration,
    applied_since: bool,
    log_bytes_grown: u64,
) -> bool {
    applied_since
        && (since_checkpoint >= options.checkpoint_interval
            || log_bytes_grown >= options.checkpoint_log_bytes)
}

pub(super) async fn housekeeping(
    raft: Raft<types::TypeConfig>,
    checkpoints: Arc<CheckpointStats>,
    log: Arc<Mutex<Log>>,
    proposals: tokio::sync::mpsc::Sender<Proposal>,
    options: ReplicaOptions,
    clock: Arc<dyn crate::store::clock::Clock>,
    stopping: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut since_checkpoint = Duration::ZERO;
    let mut since_sweep = Duration::ZERO;
    let mut since_failure: Option<Duration> = None;
    let mut log_bytes_after_checkpoint = 0;
    while !stopping.load(Ordering::SeqCst) {
        tick.tick().await;
        since_checkpoint += Duration::from_millis(100);
        since_sweep += Duration::from_millis(100);
        // Off the runtime thread: preparing a spare segment is a 64 MiB
        // `fallocate`, and the lock may be held through a sync.
        let shared = Arc::clone(&log);
        let (disk_full, log_bytes) = tokio::task::spawn_blocking(move || match shared.lock() {
            Ok(mut log) => {
                let disk_full = log.health().disk_full.load(Ordering::SeqCst);
                if disk_full {
                    log.prepare_spare();
                }
                (disk_full, log.disk_bytes())
            }
            Err(_) => (false, 0),
        })
        .await
        .unwrap_or((false, 0));
        if since_sweep >= options.sweep_interval && !disk_full {
            since_sweep = Duration::ZERO;
            let _ = proposals.try_send(Proposal {
                batch: WriteBatch::new(clock.now_s()),
                done: Box::new(|_| {}),
            });
        }
        let metrics = raft.metrics().borrow().clone();
        let applied = metrics.last_applied.map_or(0, |l| l.index);
        let checkpointed = metrics.snapshot.map_or(0, |s| s.index);
        // The purge after a checkpoint lowers the log's size: follow it down.
        log_bytes_after_checkpoint = log_bytes_after_checkpoint.min(log_bytes);
        let due = checkpoint_due(
            &options,
            since_checkpoint,
            applied > checkpointed,
            log_bytes.saturating_sub(log_bytes_after_checkpoint),
        );
        let retry_wait_over = since_failure.is_none_or(|t| t >= CHECKPOINT_RETRY_AFTER);
        since_failure = since_failure.map(|t| t + Duration::from_millis(100));
        if due && retry_wait_over && !stopping.load(Ordering::SeqCst) {
            since_checkpoint = Duration::ZERO;
            since_failure = None;
            if let Err(error) = checkpoint_now(&raft, &checkpoints).await {
                eprintln!("x700: checkpoint: {error}");
                since_failure = Some(Duration::ZERO);
            }
            let shared = Arc::clone(&log);
            log_bytes_after_checkpoint = tokio::task::spawn_blocking(move || {
                shared.lock().map_or(0, |log| log.disk_bytes())
            })
            .await
            .unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{checkpoint_due, ReplicaOptions};
    use std::time::Duration;

    /// Guards against checkpointing at every tick once a log margin keeps
    /// more bytes than `checkpoint_log_bytes`: the trigger looks at growth
    /// since the last checkpoint and needs something applied since it.
    #[test]
    fn the_log_size_trigger_counts_growth_since_the_last_checkpoint() {
        let options = ReplicaOptions {
            checkpoint_log_bytes: 1000,
            checkpoint_interval: Duration::from_secs(60),
            ..ReplicaOptions::default()
        };
        let short = Duration::from_secs(1);
        assert!(!checkpoint_due(&options, short, true, 999));
        assert!(checkpoint_due(&options, short, true, 1000));
        assert!(!checkpoint_due(&options, short, false, 5000));
        assert!(checkpoint_due(&options, Duration::from_secs(60), true, 0));
        assert!(!checkpoint_due(&options, Duration::from_secs(60), false, 0));
    }
}
