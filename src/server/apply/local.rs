//! The applier that owns every shard itself (tests, the storage suite and
//! offline runs), and the two shard-set operations every applier shares:
//! capturing a checkpoint and swapping in a snapshot.

use super::*;

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
    control.add_shards(&registry, set.owned());
    Ok(())
}
