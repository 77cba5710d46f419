//! openraft's log storage over `crate::log`: appends are written at once and
//! acknowledged (`LogFlushed`) by the group-commit thread after
//! `fdatasync`; the vote is durable before `save_vote` returns; purges and
//! truncations are durable before they return. The committed position is
//! saved without a sync (`log::state_file::StateFile::write_committed`
//! says why that is safe) and read back clamped to the log, so recovery
//! replays only what was committed (`recover`). Every call runs in tokio's
//! blocking pool (`LogStore::with_log`), never on openraft's runtime
//! thread, which carries the heartbeats.
// openraft's trait methods return its `StorageError` (224 bytes): the size
// is openraft's choice, and these are not hot paths.
#![allow(clippy::result_large_err)]

use super::types::{entry_of, log_id, position, record_of, TypeConfig};
use crate::log::{Flusher, Log, StoredVote, SyncJob};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

/// The log, shared by the storage and its readers.
#[derive(Clone)]
pub struct LogStore {
    log: Arc<Mutex<Log>>,
    flusher: Arc<Flusher>,
}

fn write_error(error: impl ToString) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::error(error.to_string())).into()
}

fn read_error(error: impl ToString) -> StorageError<u64> {
    StorageIOError::read_logs(AnyError::error(error.to_string())).into()
}

/// First wait of an append that found the disk full at a segment roll.
const APPEND_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(10);
/// Longest wait between two tries: space that returns is used within this.
const APPEND_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

impl LogStore {
    /// Wraps an open log and its flusher.
    pub fn new(log: Arc<Mutex<Log>>, flusher: Arc<Flusher>) -> LogStore {
        LogStore { log, flusher }
    }

    /// The shared log.
    pub fn log(&self) -> Arc<Mutex<Log>> {
        Arc::clone(&self.log)
    }

    /// Runs `f` on the log in tokio's blocking pool and waits for it.
    /// openraft's core, its replication streams and the peer transport
    /// share one runtime thread: an `fdatasync` (vote, truncate), a 64 MiB
    /// `fallocate` (a segment roll, a purge) or a wait for the log's lock
    /// held through one of those must not stop heartbeats there, or a
    /// member misses a few and calls an election (step 6, item 10).
    async fn with_log<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<R, StorageError<u64>> + Send + 'static,
    ) -> Result<R, StorageError<u64>> {
        let log = Arc::clone(&self.log);
        tokio::task::spawn_blocking(move || {
            let mut log = log.lock().map_err(|_| write_error("log lock poisoned"))?;
            f(&mut log)
        })
        .await
        .map_err(write_error)?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i + 1,
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        // Reads of a catching-up follower's range can miss the page cache.
        let records = self
            .with_log(move |log| log.read(from, to).map_err(read_error))
            .await?;
        records
            .iter()
            .map(|r| entry_of(r).map_err(read_error))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        self.with_log(|log| {
            Ok(LogState {
                last_purged_log_id: log.state().purged.map(log_id),
                last_log_id: log.last().map(log_id),
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = StoredVote {
            term: vote.leader_id.term,
            node: vote.leader_id.node_id,
            committed: vote.committed,
        };
        self.with_log(move |log| {
            log.save_vote(vote)
                .map_err(|e| StorageIOError::write_vote(AnyError::error(e.to_string())).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.with_log(|log| {
            Ok(log.state().vote.map(|v| {
                if v.committed {
                    Vote::new_committed(v.term, v.node)
                } else {
                    Vote::new(v.term, v.node)
                }
            }))
        })
        .await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // openraft 0.9.25 calls this before every apply (`Command::Commit`
        // in `RaftCore`), on its core task: a `pwrite` of 64 bytes, no
        // sync, but behind the log's lock, which an append rolling a
        // segment may hold through a `fallocate`.
        let committed = committed.as_ref().map(position);
        self.with_log(move |log| log.save_committed(committed).map_err(write_error))
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        self.with_log(|log| Ok(log.state().committed.map(log_id)))
            .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let records: Arc<Vec<_>> = Arc::new(entries.into_iter().map(|e| record_of(&e)).collect());
        let Some(first_index) = records.first().map(|r| r.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        // Written (not yet synced) before this returns, so that openraft
        // may read the entries back at once; the flusher thread syncs them
        // and calls back. openraft awaits each append before the next, so
        // the order of writes and of sync jobs is the log's.
        //
        // A full disk at a segment roll (no spare segment could be made) is
        // not an error to openraft, which would stop its core for good: the
        // append waits, with back-off, for space, and then writes what is
        // left (the records before the roll are written already) and syncs
        // every segment the records went to. Meanwhile this node takes no
        // entries (a follower falls behind; a leader's writes wait).
        let mut wait = APPEND_RETRY_FIRST;
        let mut retried = false;
        loop {
            let attempt = Arc::clone(&records);
            let written = self
                .with_log(move |log| {
                    let next = log.last().map_or(0, |l| l.index + 1);
                    let from = if retried {
                        attempt.iter().take_while(|r| r.index < next).count()
                    } else {
                        0
                    };
                    match log.append(&attempt[from..]) {
                        Ok(mut files) => {
                            if retried {
                                files.extend(log.files_from(first_index));
                                files.sort_by_key(|f| Arc::as_ptr(f) as usize);
                                files.dedup_by(|a, b| Arc::ptr_eq(a, b));
                            }
                            Ok(Ok(files))
                        }
                        Err(error @ crate::log::LogError::DiskFull { .. }) => Ok(Err(error)),
                        Err(error) => Err(write_error(error)),
                    }
                })
                .await?;
            match written {
                Ok(files) => {
                    if retried {
                        eprintln!("x700: log: space is back; appending again");
                    }
                    self.flusher.submit(SyncJob {
                        files,
                        done: Box::new(move |result| callback.log_io_completed(result)),
                    });
                    return Ok(());
                }
                Err(error) => {
                    if !retried {
                        eprintln!(
                            "x700: log: {error}; waiting for space before taking more entries"
                        );
                    }
                    retried = true;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(APPEND_RETRY_MAX);
                }
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.with_log(move |log| log.truncate(log_id.index).map_err(write_error))
            .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let upto = position(&log_id);
        self.with_log(move |log| log.purge(upto).map_err(write_error))
            .await
    }
}

#[cfg(test)]
mod tests {
    //! Proves that a call into the log storage never holds openraft's
    //! runtime thread while the log is busy.
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Guards step 6, item 10: the storage calls took the log's lock on
    /// openraft's one runtime thread, so a sync or `fallocate` under the
    /// lock (a vote, a segment roll, a purge) stopped every task there,
    /// heartbeats included, and followers called elections. Here another
    /// thread holds the lock until a task spawned after `save_committed`
    /// has run on the same one-thread runtime: before, that task could not
    /// run while `save_committed` waited, and the holder gave up.
    #[test]
    fn a_busy_log_does_not_hold_the_runtime_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), 7).unwrap();
        let flusher = Flusher::start(log.health(), Duration::ZERO).unwrap();
        let mut store = LogStore::new(Arc::new(Mutex::new(log)), Arc::new(flusher));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (locked_tx, locked) = mpsc::channel();
        let (ran_tx, ran) = mpsc::channel();
        let shared = store.log();
        let holder = std::thread::spawn(move || {
            let _guard = shared.lock().unwrap();
            locked_tx.send(()).unwrap();
            // Bounded: without the fix the other task never runs.
            ran.recv_timeout(Duration::from_secs(10)).is_ok()
        });
        locked.recv().unwrap();
        let saved = runtime.spawn(async move { store.save_committed(None).await });
        runtime.spawn(async move {
            // Runs only if the runtime thread is free.
            let _ = ran_tx.send(());
        });
        assert!(
            holder.join().unwrap(),
            "a task could not run while save_committed waited for the log"
        );
        runtime.block_on(saved).unwrap().unwrap();
    }
}
