//! Applying the log to the tables: the state machine's half of the write
//! path. `apply_batch` is pure over a shard set and a batch: time is the
//! applied clock, derived from the batch's clock reading and the time the
//! shards reached so far (`store::clock::applied_now_s`), so a replay or
//! another replica reaches the same state and the same binding ids, and a
//! proposer's clock can neither take time back nor make it jump.
//! `LoopApplier` hands batches to the event loops
//! that own the shards; `LocalApplier` owns all shards itself (tests and
//! the storage-suite run).

use super::auth::Access;
use super::cross::Message;
use super::dispatch;
use crate::log::Log;
use crate::number::XPolicy;
use crate::protocol::codec;
use crate::protocol::frame::{push_frame, Header, HEADER_BYTES};
use crate::protocol::status;
use crate::replication::{Answers, Applier, Recovered, WriteBatch};
use crate::store::clock::applied_now_s;
use crate::store::{ShardSet, Store};
use crate::table::checkpoint::ShardImage;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Record slots the expiry sweep examines on a shard before each write to
/// it: reclamation keeps pace with binds, deterministically.
const RECLAIM_PER_WRITE: u32 = 8;
/// Write bytes handed to a loop in one apply message: a loop applies one
/// such chunk per iteration, lookups in between.
pub const APPLY_CHUNK_BYTES: usize = 256 * 1024;
/// Slots each shard's sweep examines for an empty (sweep) batch.
const RECLAIM_PER_SWEEP: u32 = 4096;

/// Answer frames a shard set produced for one batch: `spans[i]` is
/// (position of the write in the batch, start, end) into `frames`.
#[derive(Debug, Default)]
pub struct PartialAnswers {
    /// The frames, back to back.
    pub frames: Vec<u8>,
    /// Where each write's frame is.
    pub spans: Vec<(u32, u32, u32)>,
}

/// Applies one batch, at log `index`, to the shards of `set` that do not
/// hold it yet. A write that cannot be read (it passed every check when it
/// was proposed, so this is damage) is answered `bad_request` by the owner
/// of shard 0, so exactly one owner answers every write.
///
/// Each such shard first moves its applied clock to the time the batch
/// runs at (`applied_now_s` of its clock and `batch.now_s`), and every
/// sweep and write on it runs at that time, never at the proposer's
/// reading. Shards apply every entry in log order from checkpoints that
/// carry their clock, so all shards holding the same entries hold the same
/// clock, whichever loop owns them.
pub fn apply_batch(set: &mut ShardSet, index: u64, batch: &WriteBatch, out: &mut PartialAnswers) {
    let shard_count = set.shard_count();
    let pending = |set: &ShardSet, shard: usize| {
        set.owns(shard)
            && set
                .owned()
                .find(|s| usize::from(s.id()) == shard)
                .is_some_and(|s| s.applied_log_index() <= index)
    };
    for shard in 0..usize::from(shard_count) {
        if pending(set, shard) {
            if let Some(s) = set.shard_mut(shard) {
                s.advance_clock(applied_now_s(s.applied_now_s(), batch.now_s), batch.now_s);
                if batch.is_empty() {
                    s.reclaim_expired(s.applied_now_s(), RECLAIM_PER_SWEEP);
                }
            }
        }
    }
    // Writes were checked against the node's policy before they were
    // proposed; here any well-formed number passes, so a policy change
    // between runs cannot change what a replay does.
    let policy = XPolicy { allow_legacy: true };
    for (position, write) in (0u32..).zip(batch.iter()) {
        let start = u32::try_from(out.frames.len()).unwrap_or(u32::MAX);
        let op = write.ok().and_then(|(scope, frame)| {
            let head = frame.first_chunk::<HEADER_BYTES>()?;
            let header = Header::read(head);
            let request = codec::decode_request(&header, &frame[HEADER_BYTES..]).ok()?;
            let op = dispatch::check_write(&request, policy).ok()?;
            Some((scope, header, op))
        });
        let Some((scope, header, op)) = op else {
            if pending(set, 0) {
                let request_id = write
                    .ok()
                    .and_then(|(_, f)| f.first_chunk::<HEADER_BYTES>().map(Header::read))
                    .unwrap_or_default();
                push_frame(
                    &mut out.frames,
                    request_id.opcode,
                    status::BAD_REQUEST,
                    request_id.request_id,
                    &[],
                );
                let end = u32::try_from(out.frames.len()).unwrap_or(u32::MAX);
                out.spans.push((position, start, end));
            }
            continue;
        };
        let shard = usize::from(op.table_shard(shard_count));
        if !pending(set, shard) {
            continue;
        }
        let Some(s) = set.shard_mut(shard) else {
            continue;
        };
        let now_s = s.applied_now_s();
        s.reclaim_expired(now_s, RECLAIM_PER_WRITE);
        let access = match scope.tenants() {
            None => Access::AllTenants,
            Some(tenants) => Access::Tenants(tenants.into()),
        };
        dispatch::execute_write(
            set,
            &op,
            &access,
            header.opcode,
            header.request_id,
            now_s,
            &mut out.frames,
        );
        let end = u32::try_from(out.frames.len()).unwrap_or(u32::MAX);
        out.spans.push((position, start, end));
    }
    for shard in 0..usize::from(shard_count) {
        if let Some(s) = set.shard_mut(shard) {
            if s.applied_log_index() <= index {
                s.set_applied_log_index(index + 1);
            }
        }
    }
}

/// Puts the parts of one batch's answers (from one or more shard sets)
/// back in the order of the batch's writes.
pub fn merge_answers(parts: &[&PartialAnswers]) -> Answers {
    let mut spans: Vec<(u32, usize, u32, u32)> = parts
        .iter()
        .enumerate()
        .flat_map(|(part, p)| p.spans.iter().map(move |&(pos, s, e)| (pos, part, s, e)))
        .collect();
    spans.sort_unstable_by_key(|&(position, ..)| position);
    let mut frames = Vec::with_capacity(spans.iter().map(|&(_, _, s, e)| (e - s) as usize).sum());
    for (_, part, start, end) in spans {
        frames.extend_from_slice(&parts[part].frames[start as usize..end as usize]);
    }
    Answers(frames)
}

/// Replays the committed part of the log into a freshly opened store: the
/// recovery every start (server or offline command) runs before anything
/// reads the tables (`replication::recover` says what counts as
/// committed). Returns the open log and what was replayed and left.
pub fn recover(store: &mut Store) -> Result<(Log, Recovered), String> {
    // Never serve from a damaged table: every page is checked first.
    store.verify_pages().map_err(|e| e.to_string())?;
    let dir = store.dir().to_path_buf();
    let (log, found) = Log::open(&dir, store.nonce()).map_err(|e| e.to_string())?;
    for (path, offset) in &found.torn_tails_cut {
        eprintln!("x700: recovery: torn log tail cut at {path}:{offset}");
    }
    let set = store.shard_set_mut();
    let applied_next = set
        .owned()
        .map(crate::table::Shard::applied_log_index)
        .min()
        .unwrap_or(0);
    let mut scratch = PartialAnswers::default();
    let recovered = crate::replication::replay(&dir, &log, applied_next, &mut |index, batch| {
        scratch.frames.clear();
        scratch.spans.clear();
        apply_batch(set, index, batch, &mut scratch);
    })?;
    if recovered.entries_left > 0 {
        eprintln!(
            "x700: recovery: {} log entries past the commit index left for Raft to commit",
            recovered.entries_left
        );
    }
    Ok((log, recovered))
}

/// All shards owned by the applier itself.
pub struct LocalApplier {
    set: Mutex<ShardSet>,
}

impl LocalApplier {
    /// Owns `set`.
    pub fn new(set: ShardSet) -> LocalApplier {
        LocalApplier {
            set: Mutex::new(set),
        }
    }

    /// Runs `f` on the shards.
    pub fn with_set<R>(&self, f: impl FnOnce(&mut ShardSet) -> R) -> Option<R> {
        self.set.lock().ok().map(|mut set| f(&mut set))
    }
}

impl Applier for LocalApplier {
    fn apply(
        &self,
        batches: Vec<(u64, WriteBatch)>,
    ) -> oneshot::Receiver<Result<Vec<Answers>, String>> {
        let (reply, receiver) = oneshot::channel();
        let result = self
            .set
            .lock()
            .map_err(|_| "shard set lock poisoned".to_string())
            .map(|mut set| {
                batches
                    .iter()
                    .map(|(index, batch)| {
                        let mut part = PartialAnswers::default();
                        apply_batch(&mut set, *index, batch, &mut part);
                        merge_answers(&[&part])
                    })
                    .collect()
            });
        let _ = reply.send(result);
        receiver
    }

    fn capture(&self, applied_next: u64) -> oneshot::Receiver<Result<Vec<ShardImage>, String>> {
        let (reply, receiver) = oneshot::channel();
        let result = self
            .set
            .lock()
            .map_err(|_| "shard set lock poisoned".to_string())
            .and_then(|mut set| capture_set(&mut set, applied_next));
        let _ = reply.send(result);
        receiver
    }

    fn swap_in(&self, staging: PathBuf) -> oneshot::Receiver<Result<(), String>> {
        let (reply, receiver) = oneshot::channel();
        let result = self
            .set
            .lock()
            .map_err(|_| "shard set lock poisoned".to_string())
            .and_then(|mut set| swap_in(&mut set, &staging));
        let _ = reply.send(result);
        receiver
    }
}

/// Records `applied_next` in every owned shard and captures them.
pub fn capture_set(set: &mut ShardSet, applied_next: u64) -> Result<Vec<ShardImage>, String> {
    for shard in 0..usize::from(set.shard_count()) {
        if let Some(s) = set.shard_mut(shard) {
            if s.applied_log_index() < applied_next {
                s.set_applied_log_index(applied_next);
            }
        }
    }
    set.capture().map_err(|e| e.to_string())
}

/// The exit status of a node that could not swap in a snapshot it had
/// already received and verified (`EX_SOFTWARE`): some of its shards may
/// be closed, so it stops; its next start finishes the swap from the
/// journal (`table::snapshot::finish_swap`).
pub const SWAP_FAILED_EXIT_STATUS: i32 = 70;

/// Swaps the shards `set` owns for their copies staged in `staging` (see
/// `ShardSet::swap_in`). A failure leaves shards closed and stops the
/// process (see `SWAP_FAILED_EXIT_STATUS`).
pub fn swap_in(set: &mut ShardSet, staging: &Path) -> Result<(), String> {
    let data_dir = staging.parent().unwrap_or(Path::new("."));
    if let Err(error) = set.swap_in(data_dir, staging) {
        eprintln!(
            "x700: swapping in the leader's snapshot from {} failed: {error}; stopping (the \
             next start finishes the swap)",
            staging.display()
        );
        std::process::exit(SWAP_FAILED_EXIT_STATUS);
    }
    Ok(())
}

/// Hands batches to the event loops; each applies the writes of the shards
/// it owns, in log order, and the parts are merged.
pub struct LoopApplier {
    senders: Vec<crossbeam_channel::Sender<Message>>,
    wakers: Vec<Arc<mio::Waker>>,
}

impl LoopApplier {
    /// Over the loops' inboxes and wakers.
    pub fn new(
        senders: Vec<crossbeam_channel::Sender<Message>>,
        wakers: Vec<Arc<mio::Waker>>,
    ) -> LoopApplier {
        LoopApplier { senders, wakers }
    }

    fn send(&self, loop_index: usize, message: Message) -> bool {
        // Loops never block, so a full inbox empties within an iteration.
        let sent = self.senders[loop_index].send(message).is_ok();
        let _ = self.wakers[loop_index].wake();
        sent
    }
}

impl Applier for LoopApplier {
    /// Hands the batches to every loop in chunks of about
    /// `APPLY_CHUNK_BYTES` of writes; a loop applies at most one chunk per
    /// iteration (`worker::remote`), so a follower catching up on a long
    /// range goes on answering lookups between chunks.
    fn apply(
        &self,
        batches: Vec<(u64, WriteBatch)>,
    ) -> oneshot::Receiver<Result<Vec<Answers>, String>> {
        let (reply, receiver) = oneshot::channel();
        let count = batches.len();
        let mut chunks: Vec<Vec<(u64, WriteBatch)>> = Vec::new();
        let mut chunk_bytes = 0;
        for (index, batch) in batches {
            let bytes = batch.bytes();
            match chunks.last_mut() {
                Some(chunk) if chunk_bytes + bytes <= APPLY_CHUNK_BYTES => {
                    chunk_bytes += bytes;
                    chunk.push((index, batch));
                }
                _ => {
                    chunk_bytes = bytes;
                    chunks.push(vec![(index, batch)]);
                }
            }
        }
        // parts[loop][chunk]: each loop's answers, chunk by chunk.
        let mut parts = Vec::with_capacity(self.senders.len());
        for index in 0..self.senders.len() {
            let mut of_loop = Vec::with_capacity(chunks.len());
            for chunk in &chunks {
                let (part_reply, part) = oneshot::channel();
                let message = Message::Apply {
                    batches: Arc::new(chunk.clone()),
                    reply: part_reply,
                };
                if !self.send(index, message) {
                    let _ = reply.send(Err("an event loop stopped".into()));
                    return receiver;
                }
                of_loop.push(part);
            }
            parts.push(of_loop);
        }
        tokio::spawn(async move {
            let mut collected: Vec<Vec<PartialAnswers>> = Vec::with_capacity(parts.len());
            for of_loop in parts {
                let mut answers = Vec::with_capacity(count);
                for part in of_loop {
                    match part.await {
                        Ok(mut chunk) => answers.append(&mut chunk),
                        Err(_) => {
                            let _ = reply.send(Err("an event loop stopped".into()));
                            return;
                        }
                    }
                }
                collected.push(answers);
            }
            let merged = (0..count)
                .map(|b| {
                    let parts: Vec<&PartialAnswers> = collected.iter().map(|c| &c[b]).collect();
                    merge_answers(&parts)
                })
                .collect();
            let _ = reply.send(Ok(merged));
        });
        receiver
    }

    fn capture(&self, applied_next: u64) -> oneshot::Receiver<Result<Vec<ShardImage>, String>> {
        let (reply, receiver) = oneshot::channel();
        let mut parts = Vec::with_capacity(self.senders.len());
        for index in 0..self.senders.len() {
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
        let staging = Arc::new(staging);
        let mut parts = Vec::with_capacity(self.senders.len());
        for index in 0..self.senders.len() {
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
