//! The node's handle on its registry: the current one (read by HELLO,
//! lookups and binds, swapped whole on every change), control writes
//! applied from the log, and the file each checkpoint keeps it in.
//!
//! `DIR/registry.json` holds the registry as of the last checkpoint and
//! the index after it (`applied_next`), written atomically before the
//! checkpoint manifest. Recovery reads it and replays the control writes
//! of the log from there, in order with the data writes, so every write is
//! applied against the registry it met the first time.

use super::registry::Registry;
use crate::binding::{Binding, Change, ChangeKind, Parties};
use crate::history::{Event, EventKind, History, HistoryConfig};
use crate::number::Number;
use crate::pool::{AllocConfig, Allocator};
use crate::protocol::codec::control;
use crate::protocol::frame::{push_frame, Header, HEADER_BYTES};
use crate::protocol::status;
use crate::replication::WriteBatch;
use crate::store::clock::applied_now_s;
use crate::table::Shard;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The registry's file in a data directory.
pub const REGISTRY_NAME: &str = "registry.json";

/// The current registry of a node.
#[derive(Debug)]
pub struct Control {
    dir: PathBuf,
    current: RwLock<Arc<Registry>>,
    /// `Registry::screens_lookups` of the current registry, read by every
    /// lookup batch without a lock.
    screening: AtomicBool,
    /// Lookups refused by screening since the start, by (status, tenant).
    screened: Mutex<BTreeMap<(u8, u32), u64>>,
    /// The X allocator: every live AXB binding on a pool's X, as this
    /// member has applied them. Advisory: the leader chooses X with it
    /// before a bind is logged, and the tables refuse a conflicting
    /// choice, so members need not agree on it.
    allocator: Mutex<Allocator>,
    /// Live bindings by tenant, as this member has applied them (the
    /// leader checks quotas with it before logging a bind).
    live: Mutex<HashMap<u32, u64>>,
    /// The traceability history (`history::History`), once opened: every
    /// change the shards apply, appended in log order.
    history: Mutex<Option<History>>,
    /// Events held while the start replays the log (`hold_history`): they
    /// are appended once the replay succeeded, so a start that refuses
    /// writes nothing.
    held: Mutex<Option<Vec<Event>>>,
    /// How the history was opened, to open it again after a snapshot.
    history_config: Mutex<Option<HistoryConfig>>,
}

impl Control {
    /// Reads `DIR/registry.json` (an empty registry if there is none).
    pub fn open(dir: &Path) -> Result<Control, String> {
        let registry = read(dir)?;
        Ok(Control {
            dir: dir.to_path_buf(),
            screening: AtomicBool::new(registry.screens_lookups()),
            current: RwLock::new(Arc::new(registry)),
            screened: Mutex::default(),
            allocator: Mutex::new(Allocator::new(AllocConfig::default())),
            live: Mutex::default(),
            history: Mutex::new(None),
            held: Mutex::new(None),
            history_config: Mutex::new(None),
        })
    }

    /// Closes the history (a snapshot from the leader is about to replace
    /// its files); `reopen_history` opens it again.
    pub fn close_history(&self) {
        if let Ok(mut open) = self.history.lock() {
            *open = None;
        }
    }

    /// Opens the history again as it was configured, dropping what it
    /// holds from `durable_index` on (a snapshot's: the log applies the
    /// entries after it). Nothing if it was never opened.
    pub fn reopen_history(&self, durable_index: u64) -> Result<(), String> {
        let config = self.history_config.lock().ok().and_then(|c| *c);
        match config {
            Some(config) => self.open_history(config, durable_index),
            None => Ok(()),
        }
    }

    /// Holds the history's events in memory from here until
    /// `open_history` (the start's log replay).
    pub fn hold_history(&self) {
        if let Ok(mut held) = self.held.lock() {
            *held = Some(Vec::new());
        }
    }

    /// Opens the history in `DIR/history`, dropping what it holds from
    /// log index `durable_index` on (recovery appends those again).
    pub fn open_history(&self, config: HistoryConfig, durable_index: u64) -> Result<(), String> {
        let dir = self.dir.join(HISTORY_DIR);
        crate::sys::create_private_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Ok(mut held) = self.history_config.lock() {
            *held = Some(config);
        }
        let mut history = History::open(&dir, config, durable_index).map_err(|e| e.to_string())?;
        let waiting = self.held.lock().ok().and_then(|mut held| held.take());
        if let Some(events) = waiting.filter(|events| !events.is_empty()) {
            history.append(&events).map_err(|e| e.to_string())?;
        }
        if let Ok(mut open) = self.history.lock() {
            *open = Some(history);
        }
        Ok(())
    }

    /// Appends the changes log entry `index` made to the history (if it is
    /// open). A history that cannot be written is logged and closed: the
    /// tables go on, and the node says so (`history_failed`).
    pub fn record_history<'a>(&self, index: u64, changes: impl IntoIterator<Item = &'a Change>) {
        let mut events: Vec<Event> = changes.into_iter().map(|c| event_of(index, c)).collect();
        if events.is_empty() {
            return;
        }
        // Loops report an entry's changes in their own order: a fixed
        // order makes every member's history the same bytes.
        events.sort_by_key(|e| (e.binding_id, e.kind as u8));
        if let Ok(mut waiting) = self.held.lock() {
            if let Some(waiting) = waiting.as_mut() {
                waiting.append(&mut events);
                return;
            }
        }
        let Ok(mut held) = self.history.lock() else {
            return;
        };
        let Some(history) = held.as_mut() else {
            return;
        };
        if let Err(error) = history.append(&events) {
            eprintln!("x700: traceability history: {error}; it is closed until the next start");
            *held = None;
        }
    }

    /// Makes the history durable through what it holds (checkpoints, before
    /// the manifest) and drops segments past the retention.
    pub fn sync_history(&self, now_s: u32) -> Result<(), String> {
        let Ok(mut held) = self.history.lock() else {
            return Ok(());
        };
        let Some(history) = held.as_mut() else {
            return Ok(());
        };
        history.sync(u64::MAX).map_err(|e| e.to_string())?;
        history.purge(now_s).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Answers a trace question from the history as JSON, showing only
    /// lives of tenants `visible` allows; `Err` if the history is not open
    /// or cannot be read.
    pub fn trace_json(
        &self,
        request: &control::TraceRequest<'_>,
        visible: impl Fn(u32) -> bool,
    ) -> Result<String, String> {
        let lives = self
            .with_history(|history| match *request {
                control::TraceRequest::AtX { x, at_s, caller } => {
                    history.at(x, at_s, (!caller.is_none()).then_some(caller))
                }
                control::TraceRequest::Order { tenant, order } => history.order(tenant, order),
            })
            .ok_or("the traceability history is not open on this node")?
            .map_err(|e| e.to_string())?;
        let all: Vec<serde_json::Value> = lives
            .iter()
            .filter(|life| visible(life.tenant))
            .map(|life| {
                let mode = ["axb", "axn", "axe"]
                    .get(usize::from(life.mode))
                    .copied()
                    .unwrap_or("axb");
                serde_json::json!({
                    "binding_id": life.binding_id,
                    "tenant": life.tenant,
                    "mode": mode,
                    "x": life.x.digits(),
                    "a": life.a.digits(),
                    "b": life.b.digits(),
                    "order": String::from_utf8_lossy(&life.order),
                    "created_s": life.created_s,
                    "expires_at_s": life.expires_at_s,
                    "ended_s": life.ended_s,
                    "end": life.end.map(|kind| match kind {
                        EventKind::Unbound => "unbound",
                        EventKind::Expired => "expired",
                        _ => "live",
                    }),
                    "credential": life.credential,
                })
            })
            .collect();
        // An answer frame holds at most 64 KiB: the first lives that fit,
        // and how many there were.
        let total = all.len();
        let mut shown = Vec::new();
        let mut bytes = 0;
        for life in all {
            let size = life.to_string().len() + 1;
            if bytes + size > TRACE_ANSWER_BYTES_MAX {
                break;
            }
            bytes += size;
            shown.push(life);
        }
        Ok(serde_json::json!({
            "bindings": shown,
            "total": total,
            "truncated": shown.len() < total,
        })
        .to_string())
    }

    /// Runs `f` on the history, if it is open.
    pub fn with_history<R>(&self, f: impl FnOnce(&History) -> R) -> Option<R> {
        self.history.lock().ok()?.as_ref().map(f)
    }

    /// Runs `f` on the allocator.
    pub fn with_allocator<R>(&self, f: impl FnOnce(&mut Allocator) -> R) -> Option<R> {
        self.allocator.lock().ok().map(|mut a| f(&mut a))
    }

    /// Live bindings of `tenant` on this member.
    pub fn live_of(&self, tenant: u32) -> u64 {
        self.live
            .lock()
            .map(|l| l.get(&tenant).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Starts the allocator and the tenants' counts over from `shards`
    /// (start-up: every shard), with `config`.
    pub fn rebuild<'a>(&self, config: AllocConfig, shards: impl Iterator<Item = &'a Shard>) {
        self.clear_derived(Some(config));
        self.add_shards(&self.registry(), shards);
    }

    /// Empties the allocator (keeping its configuration, or taking
    /// `config`) and the tenants' counts: a snapshot from the leader is
    /// about to replace the tables, and each set adds its new shards'
    /// bindings (`add_bindings`).
    pub fn clear_derived(&self, config: Option<AllocConfig>) {
        if let Ok(mut held) = self.allocator.lock() {
            let config = config.unwrap_or_else(|| held.config());
            *held = Allocator::new(config);
        }
        if let Ok(mut held) = self.live.lock() {
            held.clear();
        }
    }

    /// Adds `shards` to the tenants' counts (each shard keeps its own,
    /// saved with its checkpoints) and their bindings on an X of
    /// `registry`'s pools to the allocator. Reads every record only if
    /// some pool exists.
    pub fn add_shards<'a>(&self, registry: &Registry, shards: impl Iterator<Item = &'a Shard>) {
        let (Ok(mut allocator), Ok(mut live)) = (self.allocator.lock(), self.live.lock()) else {
            return;
        };
        let pools = !registry.pools().is_empty();
        for shard in shards {
            for (&tenant, &count) in shard.tenant_counts() {
                *live.entry(tenant).or_default() += u64::from(count);
            }
            if pools {
                shard.for_each_binding(|binding| {
                    if let Some((x, a, b)) = pool_edge(registry, &binding) {
                        allocator.bound(x, a, b, binding.id.0, binding.expires_at_s);
                    }
                });
            }
        }
    }

    /// The registry a staging directory carries (a snapshot from the
    /// leader), or the current one if it carries none.
    pub fn staged_registry(&self, staging: &Path) -> Result<Arc<Registry>, String> {
        if staging.join(REGISTRY_NAME).exists() {
            read(staging).map(Arc::new)
        } else {
            Ok(self.registry())
        }
    }

    /// POOL_SHOW: the tenant's ranges with their numbers in use and free,
    /// by area, as JSON.
    pub fn pool_json(&self, tenant: u32) -> String {
        let control = self;
        let registry = control.registry();
        let ranges: Vec<serde_json::Value> = registry
            .pools()
            .ranges(tenant)
            .map(|r| {
                let in_use = control
                    .with_allocator(|allocator| allocator.in_use(r.first, r.last))
                    .unwrap_or(0);
                let numbers = r.last - r.first + 1;
                serde_json::json!({
                    "range": format!("{}-{}", crate::pool::x_number(r.first).digits(), crate::pool::x_number(r.last).digits()),
                    "area": r.area.as_str(),
                    "province": r.province.name(),
                    "numbers": numbers,
                    "numbers_in_use": in_use,
                    "numbers_free": numbers - in_use.min(numbers),
                })
            })
            .collect();
        let areas: Vec<serde_json::Value> = control
            .with_allocator(|allocator| allocator.stats(registry.pools(), tenant))
            .unwrap_or_default()
            .into_iter()
            .map(|stats| {
                serde_json::json!({
                    "area": stats.area.as_str(),
                    "province": stats.province.name(),
                    "numbers": stats.numbers,
                    "numbers_in_use": stats.numbers_in_use,
                    "numbers_free": stats.numbers_free,
                    "live_pairs": stats.live_pairs,
                    "delta": stats.delta,
                })
            })
            .collect();
        serde_json::json!({
            "tenant": tenant,
            "ranges": ranges,
            "areas": areas,
        })
        .to_string()
    }

    /// Takes in the changes a shard made (`table::Shard::take_changes`):
    /// the allocator learns every AXB binding on a pool's X made, changed
    /// or ended, and the tenants' counts follow.
    pub fn absorb(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let registry = self.registry();
        if let Ok(mut live) = self.live.lock() {
            for change in changes {
                let count = live.entry(change.binding.tenant).or_default();
                match change.kind {
                    ChangeKind::Created => *count += 1,
                    ChangeKind::Updated => {}
                    ChangeKind::Unbound | ChangeKind::Expired => *count = count.saturating_sub(1),
                }
            }
        }
        if registry.pools().is_empty() {
            return;
        }
        if let Ok(mut allocator) = self.allocator.lock() {
            for change in changes {
                let id = change.binding.id.0;
                match change.kind {
                    ChangeKind::Created | ChangeKind::Updated => {
                        if let Some((x, a, b)) = pool_edge(&registry, &change.binding) {
                            allocator.bound(x, a, b, id, change.binding.expires_at_s);
                        }
                    }
                    ChangeKind::Unbound | ChangeKind::Expired => {
                        allocator.released(id, change.at_s, true);
                    }
                }
            }
        }
    }

    /// Adds a shard set's screening refusals to the node's counts (and
    /// empties `counts`).
    pub fn count_screened(&self, counts: &mut BTreeMap<(u8, u32), u64>) {
        if let Ok(mut total) = self.screened.lock() {
            for (key, count) in std::mem::take(counts) {
                *total.entry(key).or_default() += count;
            }
        }
    }

    /// Lookups refused by screening since the start: ((status, tenant),
    /// count).
    pub fn screened(&self) -> Vec<((u8, u32), u64)> {
        self.screened
            .lock()
            .map(|t| t.iter().map(|(&k, &v)| (k, v)).collect())
            .unwrap_or_default()
    }

    /// True while lookups must check tenants and callers (a suspension or
    /// a blocklist exists).
    #[inline]
    pub fn screens_lookups(&self) -> bool {
        self.screening.load(Ordering::Acquire)
    }

    /// Makes `next` the current registry.
    fn install(&self, current: &mut Arc<Registry>, next: Registry) {
        self.screening
            .store(next.screens_lookups(), Ordering::Release);
        *current = Arc::new(next);
    }

    /// The registry as of the last control write applied.
    pub fn registry(&self) -> Arc<Registry> {
        self.current
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_default()
    }

    /// Reads the file again (a snapshot from the leader replaced it).
    pub fn reload(&self) -> Result<(), String> {
        let registry = read(&self.dir)?;
        if let Ok(mut current) = self.current.write() {
            self.install(&mut current, registry);
        }
        Ok(())
    }

    /// True if `batch` is a control batch: its writes change the registry
    /// (a control write travels alone in its batch, `worker::propose`).
    pub fn is_control_batch(batch: &WriteBatch) -> bool {
        batch
            .iter()
            .next()
            .and_then(Result::ok)
            .and_then(|(_, frame)| frame.get(4).copied())
            .is_some_and(crate::protocol::opcode::is_control_write)
    }

    /// Applies a control batch at log `index`, appending one answer frame
    /// per write to `out`; returns where each is (start, end). An entry the
    /// registry already holds (recovery from a checkpoint past it) changes
    /// nothing and is answered `ok`.
    pub fn apply(&self, index: u64, batch: &WriteBatch, out: &mut Vec<u8>) -> Vec<(u32, u32)> {
        let mut spans = Vec::new();
        let Ok(mut current) = self.current.write() else {
            return spans;
        };
        let already = index < current.applied_next;
        let mut next = (**current).clone();
        next.clock_s = applied_now_s(next.clock_s, batch.now_s);
        let offset = |out: &Vec<u8>| u32::try_from(out.len()).unwrap_or(u32::MAX);
        for write in batch.iter() {
            let start = offset(out);
            let Some((header, body)) = write.ok().and_then(|(_, frame)| {
                Some((
                    Header::read(frame.first_chunk::<HEADER_BYTES>()?),
                    frame.get(HEADER_BYTES..)?,
                ))
            }) else {
                push_frame(out, 0, status::BAD_REQUEST, 0, &[]);
                spans.push((start, offset(out)));
                continue;
            };
            if already {
                push_frame(out, header.opcode, status::OK, header.request_id, &[]);
                spans.push((start, offset(out)));
                continue;
            }
            match control::from_log(header.opcode, body) {
                Ok(request) => {
                    let outcome = next.apply(&request, next.clock_s);
                    push_frame(
                        out,
                        header.opcode,
                        outcome.status,
                        header.request_id,
                        outcome.body.as_bytes(),
                    );
                }
                Err(error) => push_frame(out, header.opcode, error.status, header.request_id, &[]),
            }
            spans.push((start, offset(out)));
        }
        if !already {
            next.applied_next = index + 1;
            self.install(&mut current, next);
        }
        spans
    }

    /// Applies one control request directly (offline commands on a
    /// stopped single node, whose changes reach the files when the store
    /// closes).
    pub fn apply_now(
        &self,
        request: &control::ControlRequest<'_>,
        now_s: u32,
    ) -> super::ControlOutcome {
        let Ok(mut current) = self.current.write() else {
            return super::ControlOutcome {
                status: status::INTERNAL,
                body: String::new(),
            };
        };
        let mut next = (**current).clone();
        let outcome = next.apply(request, now_s);
        self.install(&mut current, next);
        outcome
    }

    /// Writes `registry` as the checkpoint's, holding everything before
    /// `applied_next`: a temporary file, synced, renamed, directory synced.
    pub fn persist(&self, registry: &Registry, applied_next: u64) -> std::io::Result<()> {
        let mut copy = registry.clone();
        copy.applied_next = copy.applied_next.max(applied_next);
        crate::sys::replace_file_durably(&self.dir, REGISTRY_NAME, &copy.to_json())
    }
}

/// Most bytes of lives in a trace answer (the frame's limit is 64 KiB).
const TRACE_ANSWER_BYTES_MAX: usize = 60_000;

/// The history's directory inside the data directory.
pub const HISTORY_DIR: &str = "history";

/// A change as the history keeps it.
fn event_of(index: u64, change: &Change) -> Event {
    let binding = &change.binding;
    let (a, b) = match binding.parties {
        Parties::Axb { a, b } => (a, b),
        Parties::Axn { a, default_callee } => (a, default_callee.unwrap_or(Number::NONE)),
        Parties::Axe { a, extension } => (a, extension),
    };
    Event {
        kind: match change.kind {
            ChangeKind::Created => EventKind::Created,
            ChangeKind::Updated => EventKind::Updated,
            ChangeKind::Unbound => EventKind::Unbound,
            ChangeKind::Expired => EventKind::Expired,
        },
        at_s: change.at_s,
        log_index: index,
        binding_id: binding.id.0,
        tenant: binding.tenant,
        mode: match binding.parties.mode() {
            crate::binding::Mode::Axb => 0,
            crate::binding::Mode::Axn => 1,
            crate::binding::Mode::Axe => 2,
        },
        x: binding.x,
        a,
        b,
        order: binding.order.as_bytes().to_vec(),
        expires_at_s: binding.expires_at_s,
        credential: change.credential,
        created_s: binding.created_at_s,
    }
}

/// The allocator's edge for a binding: an AXB binding whose X lies in a
/// pool.
fn pool_edge(registry: &Registry, binding: &Binding) -> Option<(Number, Number, Number)> {
    let Parties::Axb { a, b } = binding.parties else {
        return None;
    };
    registry.pools().owner(binding.x)?;
    Some((binding.x, a, b))
}

fn read(dir: &Path) -> Result<Registry, String> {
    let path = dir.join(REGISTRY_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => Registry::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
        Err(error) => Err(format!("{}: {error}", path.display())),
    }
}
