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
use crate::protocol::codec::control;
use crate::protocol::frame::{push_frame, Header, HEADER_BYTES};
use crate::protocol::status;
use crate::replication::WriteBatch;
use crate::store::clock::applied_now_s;
use std::collections::BTreeMap;
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
        })
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

fn read(dir: &Path) -> Result<Registry, String> {
    let path = dir.join(REGISTRY_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => Registry::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
        Err(error) => Err(format!("{}: {error}", path.display())),
    }
}
