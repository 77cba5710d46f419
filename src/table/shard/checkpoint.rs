//! A shard's checkpoints: capturing what changed since the last one (in
//! the shard's own thread), committing it (`table::checkpoint`), closing
//! with or without saving, and what the last checkpoint refers to in each
//! file.

use super::*;

impl Shard {
    /// True if anything changed since the last capture.
    pub fn has_changes(&self) -> bool {
        self.records.is_dirty()
            || self.cold.is_dirty()
            || self.index.is_dirty()
            || self.captured != (self.counters, self.index.state())
            || self.remarks.lock().is_ok_and(|r| !r.is_empty())
    }

    /// The first half of a checkpoint: copies out every page written since
    /// the last capture, with the counters that describe them. Cheap next
    /// to `persist`, which may run in another thread.
    pub fn capture(&mut self) -> Result<ShardImage, TableError> {
        let remarked: Vec<(FileKind, u64, u64)> = self
            .remarks
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        for (kind, offset, bytes) in remarked {
            match kind {
                FileKind::Records => self.records.mark_dirty(offset, bytes),
                FileKind::Cold => self.cold.mark_dirty(offset, bytes),
                FileKind::Index => self.index.mark_dirty(false, offset, bytes),
                FileKind::Overflow => self.index.mark_dirty(true, offset, bytes),
            }
        }
        let meta = make_meta(self.identity, self.counters, self.index.state());
        let meta = self.meta_file.next_copy(&meta);
        // What the previous capture refers to, per file: pages past it are
        // fresh (written in place without the journal).
        let (counters, index) = self.captured;
        let [records_end, cold_end, primary_end, overflow_end] = referenced_ends(&counters, &index);
        let (primary, overflow) = self.index.take_pages();
        let files = vec![
            FileImage::taken(
                FileKind::Records,
                (self.records.file_handle()?, self.records.sums_handle()?),
                self.records.take_pages(),
                records_end,
            ),
            FileImage::taken(
                FileKind::Cold,
                (self.cold.file_handle()?, self.cold.sums_handle()?),
                self.cold.take_pages(),
                cold_end,
            ),
            FileImage::taken(
                FileKind::Index,
                (
                    self.index.primary_file().file_handle()?,
                    self.index.primary_file().sums_handle()?,
                ),
                primary,
                primary_end,
            ),
            FileImage::taken(
                FileKind::Overflow,
                (
                    self.index.overflow_file().file_handle()?,
                    self.index.overflow_file().sums_handle()?,
                ),
                overflow,
                overflow_end,
            ),
        ];
        self.captured = (self.counters, self.index.state());
        self.captured_sequence = meta.sequence;
        Ok(ShardImage {
            dir: self.dir.clone(),
            shard_id: self.identity.shard_id,
            meta,
            meta_file: self.meta_file.handle()?,
            files,
            remarks: std::sync::Arc::clone(&self.remarks),
            committed: std::sync::Arc::clone(&self.committed),
            tenants: self.tenant_counts().clone(),
        })
    }

    /// Gives back to the kernel the private copies of pages that the last
    /// checkpoint wrote to the files and nothing wrote since, looking at
    /// most at `budget` pages (so a call never pauses the shard's loop
    /// long); returns the pages looked at. Does nothing until every
    /// captured checkpoint is committed: before that, the files may still
    /// hold older bytes. Afterwards the pages read from the files' page
    /// cache, which the kernel can reclaim, instead of anonymous memory,
    /// which it cannot (docs/STORAGE.md section 12).
    pub fn give_back(&mut self, budget: usize) -> usize {
        let all_committed = self.committed.load(std::sync::atomic::Ordering::Acquire)
            == self.captured_sequence
            && self.remarks.lock().is_ok_and(|r| r.is_empty());
        if !all_committed {
            return 0;
        }
        let mut looked = self.records.give_back(budget);
        looked += self.index.give_back(budget.saturating_sub(looked));
        looked + self.cold.give_back(budget.saturating_sub(looked))
    }

    /// A whole checkpoint, here and now: capture, persist, then give every
    /// page it wrote back to the kernel (offline runs: no loop to pace it).
    pub fn checkpoint(&mut self) -> Result<PersistStats, TableError> {
        let stats = self.capture()?.persist()?;
        self.give_back(usize::MAX);
        Ok(stats)
    }

    /// Closes the shard without saving what changed since its last
    /// checkpoint: its files are about to be replaced by a snapshot's.
    pub fn discard(mut self) {
        self.closed = true;
    }

    /// Checkpoints what changed and closes the shard.
    pub fn close(mut self) -> Result<(), TableError> {
        let result = if self.has_changes() {
            self.checkpoint().map(|_| ())
        } else {
            Ok(())
        };
        self.closed = true;
        result
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if !self.closed && self.has_changes() {
            if let Err(error) = self.checkpoint() {
                eprintln!("x700: closing shard {}: {error}", self.identity.shard_id);
            }
        }
    }
}

/// The end of what a checkpoint with `counters` and `index` refers to in
/// each table file (records, cold, index, overflow).
pub(super) fn referenced_ends(counters: &ShardCounters, index: &IndexState) -> [u64; 4] {
    let header = crate::table::layout::HEADER_BYTES as u64;
    [
        header + u64::from(counters.records_used) * 32,
        header + u64::from(counters.records_used) * 64,
        header + u64::from(index.primaries()) * 64,
        header + u64::from(index.overflow_used) * 64,
    ]
}
