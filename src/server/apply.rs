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
use super::dispatch::Op;
use crate::log::Log;
use crate::number::XPolicy;
use crate::protocol::codec;
use crate::protocol::frame::{push_frame, Header, HEADER_BYTES};
use crate::protocol::status;
use crate::replication::batch::Scope;
use crate::replication::{Answers, Applier, Recovered, WriteBatch};
use crate::store::clock::applied_now_s;
use crate::store::{ShardSet, Store};
use crate::table::checkpoint::ShardImage;
use crate::tenant::Control;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    /// The changes the batch made to bindings in these shards, for the
    /// traceability history (appended in log order by the applier).
    pub changes: Vec<crate::binding::Change>,
    /// Set when the shard set applied nothing of the batch because a shard
    /// could not make room for it (or waits behind an entry that could
    /// not): why. The batch must be handed over again later; `frames` and
    /// `spans` are empty.
    pub stalled: Option<String>,
}

/// A write of a batch, read and checked: its scope, header and op, or
/// `Err` with the header (if any) of one that cannot be read.
type Decoded<'a> = Result<(Scope<'a>, Header, Op), Header>;

/// Applies one batch, at log `index`, to the shards of `set` that do not
/// hold it yet. A write that cannot be read (it passed every check when it
/// was proposed, so this is damage) is answered `bad_request` by the owner
/// of shard 0, so exactly one owner answers every write.
///
/// Deterministic apply: the answers never depend on this member's disk.
/// Before touching anything, every pending shard grows its files for what
/// the batch may do to it (`Shard::reserve_for_entry`); if one cannot, or
/// a shard still waits behind an earlier entry it could not apply, the set
/// applies nothing of this batch and says so in `out.stalled`: the caller
/// hands it over again later (`LoopApplier` with back-off). So no write is
/// ever answered `disk_full` or `io_error` at apply time, and a replay
/// after space returns reaches the state every other member reached.
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
    if Control::is_control_batch(batch) {
        // A control write travels alone in its entry, and the loops apply
        // it only once every earlier entry is applied everywhere
        // (`LoopApplier`): the owner of shard 0 applies it, once. Whether
        // the registry holds it already is the registry's to say (its
        // checkpoint is its own, `tenant::Control`), not shard 0's.
        if set.owns(0) {
            let control = Arc::clone(set.control());
            let spans = control.apply(index, batch, &mut out.frames);
            out.spans.extend(
                (0u32..)
                    .zip(spans)
                    .map(|(position, (start, end))| (position, start, end)),
            );
        }
        mark_applied(set, index);
        return;
    }
    // Writes were checked against the node's policy before they were
    // proposed; here any well-formed number passes, so a policy change
    // between runs cannot change what a replay does.
    let policy = XPolicy { allow_legacy: true };
    let decoded: Vec<Decoded<'_>> = batch
        .iter()
        .map(|write| {
            let (scope, frame) = write.map_err(|_| Header::default())?;
            let head = frame
                .first_chunk::<HEADER_BYTES>()
                .ok_or_else(Header::default)?;
            let header = Header::read(head);
            let body = &frame[HEADER_BYTES..];
            if header.opcode == crate::protocol::opcode::BIND_AXB_AUTO {
                // Logged with the X the leader chose, in BIND_AXB's place.
                let bind = codec::auto::decode_logged_auto_bind(body).map_err(|_| header)?;
                let op = dispatch::check_write(&codec::Request::Bind(bind), policy)
                    .map_err(|_| header)?;
                let dispatch::Op::Bind(request) = op else {
                    return Err(header);
                };
                return Ok((scope, header, dispatch::Op::BindAuto(request)));
            }
            let request = codec::decode_request(&header, body).map_err(|_| header)?;
            let op = dispatch::check_write(&request, policy).map_err(|_| header)?;
            Ok((scope, header, op))
        })
        .collect();
    if let Err(reason) = reserve_batch(set, index, batch, &decoded, &pending) {
        out.stalled = Some(reason);
        return;
    }
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
    // Who made each write, for the history.
    let credentials: Vec<u32> = batch
        .writes_from()
        .map(|write| write.map_or(0, |(_, credential, _)| credential))
        .collect();
    for ((position, write), credential) in (0u32..).zip(decoded).zip(credentials) {
        let start = u32::try_from(out.frames.len()).unwrap_or(u32::MAX);
        let (scope, header, op) = match write {
            Ok(read) => read,
            Err(header) => {
                if pending(set, 0) {
                    push_frame(
                        &mut out.frames,
                        header.opcode,
                        status::BAD_REQUEST,
                        header.request_id,
                        &[],
                    );
                    let end = u32::try_from(out.frames.len()).unwrap_or(u32::MAX);
                    out.spans.push((position, start, end));
                }
                continue;
            }
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
        if let Some(s) = set.shard_mut(shard) {
            for mut change in s.take_changes() {
                if change.kind != crate::binding::ChangeKind::Expired {
                    change.credential = credential;
                }
                out.changes.push(change);
            }
        }
        let end = u32::try_from(out.frames.len()).unwrap_or(u32::MAX);
        out.spans.push((position, start, end));
    }
    absorb_changes(set, &mut out.changes);
    mark_applied(set, index);
}

/// Hands the changes the owned shards made to the registry's allocator and
/// counts (`tenant::Control::absorb`), and keeps them in `changes` for the
/// history.
fn absorb_changes(set: &mut ShardSet, changes: &mut Vec<crate::binding::Change>) {
    let control = Arc::clone(set.control());
    for shard in 0..usize::from(set.shard_count()) {
        if let Some(s) = set.shard_mut(shard) {
            changes.extend(s.take_changes());
        }
    }
    control.absorb(changes);
}

/// Notes in every owned shard that entry `index` is applied.
fn mark_applied(set: &mut ShardSet, index: u64) {
    for shard in 0..usize::from(set.shard_count()) {
        if let Some(s) = set.shard_mut(shard) {
            if s.applied_log_index() <= index {
                s.set_applied_log_index(index + 1);
            }
        }
    }
}

/// The first half of `apply_batch`: makes every pending shard of `set`
/// ready to apply entry `index` (room grown for its writes, no earlier
/// entry waiting). `Err` says why the set must not apply it now; nothing
/// but file lengths and the shards' stall marks changed.
fn reserve_batch(
    set: &mut ShardSet,
    index: u64,
    batch: &WriteBatch,
    decoded: &[Decoded<'_>],
    pending: &impl Fn(&ShardSet, usize) -> bool,
) -> Result<(), String> {
    let shard_count = set.shard_count();
    let mut writes = vec![0u32; usize::from(shard_count)];
    for (_, _, op) in decoded.iter().flatten() {
        let shard = usize::from(op.table_shard(shard_count));
        writes[shard] = writes[shard].saturating_add(1);
    }
    let sweep_slots = if batch.is_empty() {
        RECLAIM_PER_SWEEP
    } else {
        0
    };
    let mut stalled = None;
    for (shard, &writes) in writes.iter().enumerate() {
        if !pending(set, shard) {
            continue;
        }
        let Some(s) = set.shard_mut(shard) else {
            continue;
        };
        if let Some(earlier) = s.stalled_at().filter(|&at| at < index) {
            return Err(format!(
                "shard {shard} waits to apply entry {earlier} before entry {index}"
            ));
        }
        // The sweeps run at the time the batch will run at, which may
        // find more bindings expired than the shard's clock does now.
        let now_s = applied_now_s(s.applied_now_s(), batch.now_s);
        match s.reserve_for_entry(now_s, writes, RECLAIM_PER_WRITE, sweep_slots) {
            Ok(()) => s.set_stalled_at(None),
            Err(error) => {
                s.set_stalled_at(Some(index));
                stalled.get_or_insert_with(|| {
                    format!("shard {shard} cannot make room for entry {index}: {error}")
                });
            }
        }
    }
    stalled.map_or(Ok(()), Err)
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
    let mut stalled = None;
    let recovered = crate::replication::replay(&dir, &log, applied_next, &mut |index, batch| {
        scratch.frames.clear();
        scratch.spans.clear();
        scratch.changes.clear();
        apply_batch(set, index, batch, &mut scratch);
        set.control().record_history(index, &scratch.changes);
        // Later entries stall behind the first that did (the shard's stall
        // mark), so nothing applies past it.
        if let (None, Some(reason)) = (&stalled, scratch.stalled.take()) {
            stalled = Some(reason);
        }
    })?;
    // Answering the entry differently from the other members is not an
    // option, nor is skipping it: the start stops here, and the next one
    // replays from the same place.
    if let Some(reason) = stalled {
        return Err(format!(
            "recovery: {reason}; free some space and start again"
        ));
    }
    if recovered.entries_left > 0 {
        eprintln!(
            "x700: recovery: {} log entries past the commit index left for Raft to commit",
            recovered.entries_left
        );
    }
    Ok((log, recovered))
}

/// All shards owned by the applier itself (tests and offline runs). It has
/// no loop to retry a stalled batch from: a batch the shards cannot make
/// room for is an error to openraft, which stops applying.
pub struct LocalApplier {
    set: Mutex<ShardSet>,
    control: Arc<Control>,
}

impl LocalApplier {
    /// Owns `set`.
    pub fn new(set: ShardSet) -> LocalApplier {
        LocalApplier {
            control: Arc::clone(set.control()),
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
            .and_then(|mut set| {
                batches
                    .iter()
                    .map(|(index, batch)| {
                        let mut part = PartialAnswers::default();
                        apply_batch(&mut set, *index, batch, &mut part);
                        // With no loop to retry from, a stall stops the
                        // state machine rather than answer differently.
                        match part.stalled.take() {
                            Some(reason) => Err(reason),
                            None => {
                                self.control.record_history(*index, &part.changes);
                                Ok(merge_answers(&[&part]))
                            }
                        }
                    })
                    .collect()
            });
        let _ = reply.send(result);
        receiver
    }

    fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
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
        self.control.clear_derived(None);
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
    let control = Arc::clone(set.control());
    let registry = control.staged_registry(staging)?;
    if let Err(error) = set.swap_in(data_dir, staging) {
        eprintln!(
            "x700: swapping in the leader's snapshot from {} failed: {error}; stopping (the \
             next start finishes the swap)",
            staging.display()
        );
        std::process::exit(SWAP_FAILED_EXIT_STATUS);
    }
    // The applier emptied the allocator and the counts before the swap
    // (`Control::clear_derived`): each set adds its new shards' bindings.
    control.add_bindings(&registry, |take| {
        for shard in set.owned() {
            shard.for_each_binding(|binding| take(&binding));
        }
    });
    Ok(())
}

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
