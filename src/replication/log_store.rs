//! openraft's log storage over `crate::log`: appends are written at once and
//! acknowledged (`LogFlushed`) by the group-commit thread after
//! `fdatasync`; the vote is durable before `save_vote` returns; purges and
//! truncations are durable before they return. The committed position is
//! saved without a sync (`log::state_file::StateFile::write_committed`
//! says why that is safe) and read back clamped to the log, so recovery
//! replays only what was committed (`recover`).
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

impl LogStore {
    /// Wraps an open log and its flusher.
    pub fn new(log: Arc<Mutex<Log>>, flusher: Arc<Flusher>) -> LogStore {
        LogStore { log, flusher }
    }

    /// The shared log.
    pub fn log(&self) -> Arc<Mutex<Log>> {
        Arc::clone(&self.log)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Log>, StorageError<u64>> {
        self.log
            .lock()
            .map_err(|_| write_error("log lock poisoned"))
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
        let records = self.lock()?.read(from, to).map_err(read_error)?;
        records
            .iter()
            .map(|r| entry_of(r).map_err(read_error))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let log = self.lock()?;
        Ok(LogState {
            last_purged_log_id: log.state().purged.map(log_id),
            last_log_id: log.last().map(log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.lock()?
            .save_vote(StoredVote {
                term: vote.leader_id.term,
                node: vote.leader_id.node_id,
                committed: vote.committed,
            })
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e.to_string())).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.lock()?.state().vote.map(|v| {
            if v.committed {
                Vote::new_committed(v.term, v.node)
            } else {
                Vote::new(v.term, v.node)
            }
        }))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        // openraft 0.9.25 calls this before every apply (`Command::Commit`
        // in `RaftCore`), on its core task: a `pwrite` of 64 bytes, no
        // sync, so it costs no more than the lock.
        self.lock()?
            .save_committed(committed.as_ref().map(position))
            .map_err(write_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.lock()?.state().committed.map(log_id))
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
        let records: Vec<_> = entries.into_iter().map(|e| record_of(&e)).collect();
        let files = self.lock()?.append(&records).map_err(write_error)?;
        self.flusher.submit(SyncJob {
            files,
            done: Box::new(move |result| callback.log_io_completed(result)),
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.lock()?.truncate(log_id.index).map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.lock()?.purge(position(&log_id)).map_err(write_error)
    }
}
