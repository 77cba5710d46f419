//! The applier of a running node: batches handed to the event loops that
//! own the shards, control batches as barriers, stalled batches retried
//! with back-off (`ApplyStall`).

use super::*;

/// First wait before handing a stalled batch over again.
const STALL_RETRY_FIRST: Duration = Duration::from_millis(10);
/// Longest wait between two tries of a stalled batch: space that returns
/// is noticed within this.
const STALL_RETRY_MAX: Duration = Duration::from_secs(1);

/// Whether this member has stopped applying the log because it cannot make
/// room for a committed entry (a full disk, most likely). It does not answer
/// that entry differently from the other members: it waits, tries again
/// with back-off, and says so meanwhile (`x700_apply_stalled`, `cluster
/// status`, `/readyz` 503, a log line), until the entry applies.
#[derive(Debug, Default)]
pub struct ApplyStall {
    stalled: AtomicBool,
    /// Why, while stalled.
    reason: Mutex<String>,
    /// Stalls begun since the start.
    stalls: AtomicU64,
}

impl ApplyStall {
    /// True while a committed entry waits for room.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Why the apply waits, while it does.
    pub fn reason(&self) -> Option<String> {
        if !self.is_stalled() {
            return None;
        }
        self.reason.lock().ok().map(|r| r.clone())
    }

    /// Stalls begun since the process started.
    pub fn stalls(&self) -> u64 {
        self.stalls.load(Ordering::Relaxed)
    }

    /// Notes that the apply waits, for `reason`; logs it when it begins.
    pub fn begin(&self, reason: &str) {
        if let Ok(mut held) = self.reason.lock() {
            reason.clone_into(&mut held);
        }
        if !self.stalled.swap(true, Ordering::SeqCst) {
            self.stalls.fetch_add(1, Ordering::Relaxed);
            eprintln!("x700: apply stalled: {reason}; retrying until it applies");
        }
    }

    /// Notes that the apply goes on; logs it if it had stalled.
    pub fn end(&self) {
        if self.stalled.swap(false, Ordering::SeqCst) {
            eprintln!("x700: apply resumed");
        }
    }
}

/// Splits batches into chunks of about `APPLY_CHUNK_BYTES` of writes.
fn chunks_of(batches: &[(u64, WriteBatch)]) -> Vec<Arc<Vec<(u64, WriteBatch)>>> {
    let mut chunks: Vec<Vec<(u64, WriteBatch)>> = Vec::new();
    let mut chunk_bytes = 0;
    for (index, batch) in batches {
        let bytes = batch.bytes();
        match chunks.last_mut() {
            Some(chunk) if chunk_bytes + bytes <= APPLY_CHUNK_BYTES => {
                chunk_bytes += bytes;
                chunk.push((*index, batch.clone()));
            }
            _ => {
                chunk_bytes = bytes;
                chunks.push(vec![(*index, batch.clone())]);
            }
        }
    }
    chunks.into_iter().map(Arc::new).collect()
}

/// One event loop's inbox and waker.
#[derive(Clone)]
struct LoopInbox {
    sender: crossbeam_channel::Sender<Message>,
    waker: Arc<mio::Waker>,
}

impl LoopInbox {
    /// Hands `chunks` to the loop; `None` if it stopped.
    fn send(
        &self,
        chunks: &[Arc<Vec<(u64, WriteBatch)>>],
    ) -> Option<Vec<oneshot::Receiver<Vec<PartialAnswers>>>> {
        let mut parts = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let (reply, part) = oneshot::channel();
            let message = Message::Apply {
                batches: Arc::clone(chunk),
                reply,
            };
            // Loops never block, so a full inbox empties within an iteration.
            let sent = self.sender.send(message).is_ok();
            let _ = self.waker.wake();
            if !sent {
                return None;
            }
            parts.push(part);
        }
        Some(parts)
    }
}

/// Waits for a loop's answers to every chunk, in order; `None` if it
/// stopped.
async fn collect(
    parts: Vec<oneshot::Receiver<Vec<PartialAnswers>>>,
) -> Option<Vec<PartialAnswers>> {
    let mut answers = Vec::new();
    for part in parts {
        answers.append(&mut part.await.ok()?);
    }
    Some(answers)
}

/// Gets one loop's answers to all of `batches`, its first `parts` already
/// handed over: while the loop reports a stalled batch, waits (with
/// back-off) and hands it the batches from that one on again. `None` if
/// the loop stopped.
async fn answers_of_loop(
    inbox: LoopInbox,
    batches: Arc<Vec<(u64, WriteBatch)>>,
    parts: Vec<oneshot::Receiver<Vec<PartialAnswers>>>,
    stall: Arc<ApplyStall>,
) -> Option<Vec<PartialAnswers>> {
    let mut answers = collect(parts).await?;
    let mut wait = STALL_RETRY_FIRST;
    while let Some(first) = answers.iter().position(|a| a.stalled.is_some()) {
        stall.begin(answers[first].stalled.as_deref().unwrap_or("no room"));
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(STALL_RETRY_MAX);
        let again = inbox.send(&chunks_of(&batches[first..]))?;
        answers.truncate(first);
        answers.append(&mut collect(again).await?);
    }
    Some(answers)
}

/// Splits batches into runs that the loops may apply together: a control
/// batch is a run of its own.
fn segments(batches: Vec<(u64, WriteBatch)>) -> Vec<Vec<(u64, WriteBatch)>> {
    let mut runs: Vec<Vec<(u64, WriteBatch)>> = Vec::new();
    let mut open = false;
    for (index, batch) in batches {
        let control = Control::is_control_batch(&batch);
        if control || !open {
            runs.push(Vec::new());
        }
        open = !control;
        if let Some(run) = runs.last_mut() {
            run.push((index, batch));
        }
    }
    runs
}

/// Hands `batches` to every loop in chunks of about `APPLY_CHUNK_BYTES` of
/// writes and merges their answers (see `LoopApplier::apply`).
async fn apply_in_loops(
    inboxes: &[LoopInbox],
    stall: &Arc<ApplyStall>,
    control: &Arc<Control>,
    batches: Vec<(u64, WriteBatch)>,
) -> Result<Vec<Answers>, String> {
    let stopped = || "an event loop stopped".to_string();
    let count = batches.len();
    let chunks = chunks_of(&batches);
    let batches = Arc::new(batches);
    // parts[loop]: each loop's answers, chunk by chunk.
    let mut parts = Vec::with_capacity(inboxes.len());
    for inbox in inboxes {
        parts.push(inbox.send(&chunks).ok_or_else(stopped)?);
    }
    let mut collected: Vec<Vec<PartialAnswers>> = Vec::with_capacity(parts.len());
    for (inbox, of_loop) in inboxes.iter().zip(parts) {
        let answers = answers_of_loop(
            inbox.clone(),
            Arc::clone(&batches),
            of_loop,
            Arc::clone(stall),
        )
        .await
        .ok_or_else(stopped)?;
        collected.push(answers);
    }
    stall.end();
    Ok((0..count)
        .map(|b| {
            let parts: Vec<&PartialAnswers> = collected.iter().map(|c| &c[b]).collect();
            control.record_history(batches[b].0, parts.iter().flat_map(|p| &p.changes));
            merge_answers(&parts)
        })
        .collect())
}

/// Hands batches to the event loops; each applies the writes of the shards
/// it owns, in log order, and the parts are merged.
pub struct LoopApplier {
    inboxes: Vec<LoopInbox>,
    stall: Arc<ApplyStall>,
    control: Arc<Control>,
}

impl LoopApplier {
    /// Over the loops' inboxes and wakers; `stall` tells the rest of the
    /// node when applying waits for room.
    pub fn new(
        senders: Vec<crossbeam_channel::Sender<Message>>,
        wakers: Vec<Arc<mio::Waker>>,
        stall: Arc<ApplyStall>,
        control: Arc<Control>,
    ) -> LoopApplier {
        let inboxes = senders
            .into_iter()
            .zip(wakers)
            .map(|(sender, waker)| LoopInbox { sender, waker })
            .collect();
        LoopApplier {
            inboxes,
            stall,
            control,
        }
    }

    fn send(&self, loop_index: usize, message: Message) -> bool {
        let inbox = &self.inboxes[loop_index];
        // Loops never block, so a full inbox empties within an iteration.
        let sent = inbox.sender.send(message).is_ok();
        let _ = inbox.waker.wake();
        sent
    }
}

impl Applier for LoopApplier {
    fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// Hands the batches to every loop in chunks of about
    /// `APPLY_CHUNK_BYTES` of writes; a loop applies at most one chunk per
    /// iteration (`worker::remote`), so a follower catching up on a long
    /// range goes on answering lookups between chunks. A loop that cannot
    /// make room for a batch applies nothing of it or after it; the batches
    /// from it on go to that loop again after a wait that doubles up to
    /// `STALL_RETRY_MAX`, until they apply (`ApplyStall` says so
    /// meanwhile), so the answers are the ones every member gives.
    ///
    /// A control batch (tenants, blocklists) is a barrier: the batches
    /// before it are applied by every loop first, then it, then the rest,
    /// so every data write meets the registry its place in the log gives
    /// it, whichever loop applies it.
    fn apply(
        &self,
        batches: Vec<(u64, WriteBatch)>,
    ) -> oneshot::Receiver<Result<Vec<Answers>, String>> {
        let (reply, receiver) = oneshot::channel();
        let inboxes = self.inboxes.clone();
        let stall = Arc::clone(&self.stall);
        let control = Arc::clone(&self.control);
        tokio::spawn(async move {
            let mut answers = Vec::with_capacity(batches.len());
            for segment in segments(batches) {
                match apply_in_loops(&inboxes, &stall, &control, segment).await {
                    Ok(mut more) => answers.append(&mut more),
                    Err(error) => {
                        let _ = reply.send(Err(error));
                        return;
                    }
                }
            }
            let _ = reply.send(Ok(answers));
        });
        receiver
    }

    fn capture(&self, applied_next: u64) -> oneshot::Receiver<Result<Vec<ShardImage>, String>> {
        let (reply, receiver) = oneshot::channel();
        let mut parts = Vec::with_capacity(self.inboxes.len());
        for index in 0..self.inboxes.len() {
            let (part_reply, part) = oneshot::channel();
            if !self.send(
                index,
                Message::Capture {
                    applied_next,
                    reply: part_reply,
                },
            ) {
                let _ = reply.send(Err("an event loop stopped".into()));
                return receiver;
            }
            parts.push(part);
        }
        tokio::spawn(async move {
            let mut images = Vec::new();
            for part in parts {
                match part.await {
                    Ok(Ok(mut more)) => images.append(&mut more),
                    Ok(Err(error)) => {
                        let _ = reply.send(Err(error));
                        return;
                    }
                    Err(_) => {
                        let _ = reply.send(Err("an event loop stopped".into()));
                        return;
                    }
                }
            }
            let _ = reply.send(Ok(images));
        });
        receiver
    }

    /// Every loop swaps its own shards (in order with its applies), so no
    /// lookup ever meets a shard half swapped.
    fn swap_in(&self, staging: PathBuf) -> oneshot::Receiver<Result<(), String>> {
        let (reply, receiver) = oneshot::channel();
        self.control.clear_derived(None);
        let staging = Arc::new(staging);
        let mut parts = Vec::with_capacity(self.inboxes.len());
        for index in 0..self.inboxes.len() {
            let (part_reply, part) = oneshot::channel();
            let message = Message::SwapIn {
                staging: Arc::clone(&staging),
                reply: part_reply,
            };
            if !self.send(index, message) {
                let _ = reply.send(Err("an event loop stopped".into()));
                return receiver;
            }
            parts.push(part);
        }
        tokio::spawn(async move {
            for part in parts {
                let outcome = part
                    .await
                    .unwrap_or_else(|_| Err("an event loop stopped".into()));
                if outcome.is_err() {
                    let _ = reply.send(outcome);
                    return;
                }
            }
            let _ = reply.send(Ok(()));
        });
        receiver
    }
}
