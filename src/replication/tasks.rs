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
    let mut last_trigger = tokio::time::Instant::now();
    loop {
        // openraft ignores a trigger while a checkpoint builds, and the one
        // building may have captured less than `applied`: ask again until
        // one covers it.
        if last_trigger.elapsed() >= RETRIGGER_AFTER {
            raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
            last_trigger = tokio::time::Instant::now();
        }
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

/// How long `checkpoint_now` waits before triggering again.
const RETRIGGER_AFTER: Duration = Duration::from_millis(500);

/// Entries this node has handed to openraft and not yet heard back about.
/// openraft 0.9 makes each append durable before it takes the next, so
/// everything that arrives meanwhile is merged into the next entry: one
/// append, one `fdatasync`, one apply for all of it (group commit at the
/// proposal level). Two in flight keep the next entry ready while one syncs.
const ENTRIES_IN_FLIGHT_MAX: usize = 2;

/// One proposal merged into an entry: how many writes it holds, who hears
/// their answers, and by when.
struct Part {
    count: u32,
    /// `None` once answered (its deadline passed before the entry's
    /// answer came); the part still counts its writes, so that the parts
    /// after it find their answers.
    done: Option<Done>,
    deadline: tokio::time::Instant,
}

/// What each way an entry can end tells its writers.
///
/// openraft 0.9.25 (`core/raft_core.rs`) keeps a responder per appended
/// entry of a leader, keyed by log index, and:
/// - answers it with the apply result once the entry is applied on this
///   node, whoever leads by then (the entry committed: the answers are
///   true, and given);
/// - answers `ForwardToLeader` when a new leader's entries overwrite it
///   (`DeleteConflictLog`). That does not prove it will never commit: with
///   five members, others holding it may still elect a leader that commits
///   it. So it means "outcome unknown";
/// - answers `ForwardToLeader` at once, without appending, to a write
///   that reaches a core that is not leader (`get_leader_handler_or_reject`).
///   The answer cannot be told from the one above, so the proposer asks
///   openraft only while its metrics say this node leads, and answers
///   `NOT_LEADER` itself otherwise (nothing done);
/// - never answers it while a deposed leader stays cut off, or a leader
///   without a quorum waits: no deadline of its own;
/// - drops it when the core stops (the receiver sees the sender gone).
///
/// So once openraft holds the entry, everything but an apply result is
/// `OutcomeUnknown`; the deadline and a change of leadership (the metrics
/// no longer show this node leading in the term it proposed in) end the
/// wait early, and a late answer finds its receiver dropped and is lost.
fn outcome_of<E>(received: Result<WriteResult, E>) -> Result<(u64, Answers), Refusal> {
    match received {
        Ok(Ok(response)) => Ok((response.log_id.index, response.data)),
        Ok(Err(_)) | Err(_) => Err(Refusal::OutcomeUnknown),
    }
}

/// What openraft answers a client write.
type WriteResult = Result<
    openraft::raft::ClientWriteResponse<types::TypeConfig>,
    openraft::error::ClientWriteError<u64, BasicNode>,
>;

/// Whether the metrics still show this node leading in `term`.
fn leads_in(metrics: &openraft::RaftMetrics<u64, BasicNode>, term: u64) -> bool {
    metrics.state == openraft::ServerState::Leader && metrics.current_term == term
}

pub(super) async fn propose(
    raft: Raft<types::TypeConfig>,
    mut inbox: tokio::sync::mpsc::Receiver<Proposal>,
    acknowledged_index: Arc<AtomicU64>,
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
        // A proposal that waited out its deadline in the queue was never
        // seen by openraft: nothing was done, and it says so.
        let now = tokio::time::Instant::now();
        if first.deadline <= now {
            (first.done)(Err(Refusal::Busy));
            continue;
        }
        // Merge whatever else is waiting, up to one batch's bytes.
        let mut merged = first.batch;
        let mut parts = vec![Part {
            count: merged.count,
            done: Some(first.done),
            deadline: first.deadline,
        }];
        while let Ok(next) = inbox.try_recv() {
            if next.deadline <= now {
                (next.done)(Err(Refusal::Busy));
                continue;
            }
            if !merged.append(&next.batch) {
                carried = Some(next);
                break;
            }
            parts.push(Part {
                count: next.batch.count,
                done: Some(next.done),
                deadline: next.deadline,
            });
        }
        let (leads, term, leader) = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            (
                metrics.state == openraft::ServerState::Leader,
                metrics.current_term,
                // A node between states may still name itself.
                metrics.current_leader.filter(|&id| id != metrics.id),
            )
        };
        if !leads {
            answer_all(parts, Err(Refusal::NotLeader(leader)));
            continue;
        }
        match raft.client_write_ff(merged).await {
            Ok(receiver) => {
                let metrics = raft.metrics();
                let acknowledged_index = Arc::clone(&acknowledged_index);
                tokio::spawn(async move {
                    await_outcome(receiver, parts, metrics, term, &acknowledged_index).await;
                    drop(permit);
                });
            }
            // The core is gone: the entry never reached it.
            Err(_) => answer_all(parts, Err(Refusal::Stopped)),
        }
    }
}

/// Waits for openraft's answer to one entry, its parts' deadlines, or the
/// end of this node's leadership in `term`, whichever comes first, and
/// answers every part exactly once (`outcome_of` says why each way).
async fn await_outcome<E>(
    mut receiver: impl std::future::Future<Output = Result<WriteResult, E>> + Unpin,
    mut parts: Vec<Part>,
    mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>,
    term: u64,
    acknowledged_index: &AtomicU64,
) {
    // The leadership may have changed since the proposer looked: the first
    // `changed` fires at once, so it is checked again right away.
    metrics.mark_changed();
    loop {
        let waiting = parts.iter().filter(|part| part.done.is_some());
        let Some(next_deadline) = waiting.map(|part| part.deadline).min() else {
            return;
        };
        // Biased: an answer from openraft that is ready wins over a
        // deadline or a change of leadership seen at the same moment.
        tokio::select! {
            biased;
            received = &mut receiver => {
                let outcome = outcome_of(received).map(|(index, answers)| {
                    acknowledged_index.fetch_max(index, Ordering::SeqCst);
                    answers
                });
                split_answers(outcome, parts);
                return;
            }
            () = tokio::time::sleep_until(next_deadline) => {
                let now = tokio::time::Instant::now();
                for part in parts.iter_mut().filter(|part| part.deadline <= now) {
                    if let Some(done) = part.done.take() {
                        done(Err(Refusal::OutcomeUnknown));
                    }
                }
            }
            changed = metrics.changed() => {
                if changed.is_err() || !leads_in(&metrics.borrow_and_update(), term) {
                    answer_all(parts, Err(Refusal::OutcomeUnknown));
                    return;
                }
            }
        }
    }
}

/// Answers every part not yet answered with the same refusal.
fn answer_all(parts: Vec<Part>, refusal: Result<Answers, Refusal>) {
    split_answers(refusal, parts);
}

/// Hands each merged proposal its own answers (one frame per write, in
/// order), or every one the same refusal; parts already answered are
/// skipped.
fn split_answers(outcome: Result<Answers, Refusal>, parts: Vec<Part>) {
    let frames = match outcome {
        Ok(Answers(frames)) => frames,
        Err(refusal) => {
            for done in parts.into_iter().filter_map(|part| part.done) {
                done(Err(refusal));
            }
            return;
        }
    };
    let mut at = 0usize;
    for part in parts {
        let start = at;
        for _ in 0..part.count {
            let length = frames
                .get(at..at + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if length < crate::protocol::frame::HEADER_BYTES || at + length > frames.len() {
                break;
            }
            at += length;
        }
        if let Some(done) = part.done {
            done(Ok(Answers(frames[start..at].to_vec())));
        }
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
                deadline: tokio::time::Instant::now() + options.proposal_deadline,
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
    use super::{checkpoint_due, split_answers, Answers, Part, Refusal, ReplicaOptions};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    type Heard = Arc<Mutex<Vec<(usize, Result<Answers, Refusal>)>>>;

    fn part(count: u32, index: usize, heard: &Heard) -> Part {
        let heard = Arc::clone(heard);
        Part {
            count,
            done: Some(Box::new(move |outcome| {
                heard.lock().unwrap().push((index, outcome));
            })),
            deadline: tokio::time::Instant::now(),
        }
    }

    fn answer_frames(request_ids: std::ops::Range<u32>) -> Vec<u8> {
        let mut frames = Vec::new();
        for request_id in request_ids {
            crate::protocol::frame::push_frame(&mut frames, 0x20, 0, request_id, &[]);
        }
        frames
    }

    /// Guards the line-up of a merged entry's answers once one of its
    /// proposals was answered early (its deadline passed): the proposals
    /// after it still get their own writes' answers, not its.
    #[test]
    fn a_part_answered_at_its_deadline_keeps_its_place_in_the_answers() {
        let heard: Heard = Arc::default();
        let mut parts = vec![part(2, 0, &heard), part(3, 1, &heard), part(1, 2, &heard)];
        // The first part's deadline passed: answered, still counting.
        if let Some(done) = parts[0].done.take() {
            done(Err(Refusal::OutcomeUnknown));
        }
        split_answers(Ok(Answers(answer_frames(1..7))), parts);
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 3, "every part heard exactly once");
        assert_eq!(heard[0], (0, Err(Refusal::OutcomeUnknown)));
        assert_eq!(heard[1], (1, Ok(Answers(answer_frames(3..6)))));
        assert_eq!(heard[2], (2, Ok(Answers(answer_frames(6..7)))));
    }

    /// A refusal reaches every part not yet answered, and only those.
    #[test]
    fn a_refusal_skips_the_parts_already_answered() {
        let heard: Heard = Arc::default();
        let mut parts = vec![part(1, 0, &heard), part(1, 1, &heard)];
        parts[0].done = None;
        split_answers(Err(Refusal::OutcomeUnknown), parts);
        assert_eq!(
            *heard.lock().unwrap(),
            vec![(1, Err(Refusal::OutcomeUnknown))]
        );
    }

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
