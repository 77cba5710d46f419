//! Applying the log to the tables: the state machine's half of the write
//! path. `apply_batch` is pure over a shard set and a batch: time is the
//! applied clock, derived from the batch's clock reading and the time the
//! shards reached so far (`store::clock::applied_now_s`), so a replay or
//! another replica reaches the same state and the same binding ids, and a
//! proposer's clock can neither take time back nor make it jump.
//! `LoopApplier` hands batches to the event loops
//! that own the shards; `LocalApplier` owns all shards itself (tests and
//! the storage-suite run).

mod local;
mod loops;

pub use local::{capture_set, swap_in, LocalApplier, SWAP_FAILED_EXIT_STATUS};
pub use loops::{ApplyStall, LoopApplier};

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
    // Never serve from a damaged table: every page is checked before it is
    // used (the cold files' pages on first touch, or by the background
    // thread a server starts: `Store::take_page_checks`).
    store.check_for_serving().map_err(|e| e.to_string())?;
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
