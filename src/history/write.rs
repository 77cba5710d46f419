//! Appending, sealing, syncing and purging (see the module docs of
//! `history`).

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::event::{Event, EventKind, ORDER_BYTES_MAX};
use super::index::{self, MemIndex, Meta};
use super::record::{self, Base};
use super::segment::{self, DATA_SUFFIX, INDEX_SUFFIX};
use super::store::{Index, Open, Sealed};
use super::{
    io, Fill, History, HistoryError, Pending, PurgeReport, SEGMENT_BYTES_MAX, WRITE_BLOCK_BYTES,
};
use crate::number::Number;

impl History {
    /// Appends `events` (in log order; several events may share a log
    /// index, the indexes never go down). Events at or below the last log
    /// index `open` found are already here and are skipped, so replaying
    /// the log is idempotent. Writes whole blocks, never fsyncs.
    ///
    /// An update or end event should carry X and `created_s` (the table
    /// record the apply path changes holds both). One that does not takes
    /// them from a binding created earlier in `events` or in the open
    /// segment (both a function of the log alone, so every member fills the
    /// same). Found nowhere, it is stored without X (queries then also read
    /// every X-less record in their window) or without a creation time
    /// (every query window then spans the whole history): correct, slower.
    /// A batch with an order over 32 bytes, a mode above 2 or a log index
    /// going down is `Invalid` and nothing of it is appended.
    pub fn append(&mut self, events: &[Event]) -> Result<(), HistoryError> {
        self.poll_pending(false)?;
        let fills = self.check(events)?;
        for (event, fill) in events.iter().zip(fills) {
            if event.log_index < self.floor {
                continue;
            }
            let event = match fill {
                None => Cow::Borrowed(event),
                Some(fill) => {
                    let mut e = event.clone();
                    e.x = fill.x;
                    if let Some(created_s) = fill.created_s {
                        e.created_s = created_s;
                    }
                    Cow::Owned(e)
                }
            };
            self.append_one(&event)?;
        }
        if let Some(open) = &mut self.open {
            if open.buffer.len() >= WRITE_BLOCK_BYTES {
                flush(open)?;
            }
        }
        Ok(())
    }

    /// Checks a batch; says for each event what must be filled in.
    fn check(&self, events: &[Event]) -> Result<Vec<Option<Fill>>, HistoryError> {
        let mut last = self.last_index;
        let mut fills = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let invalid = |reason| HistoryError::Invalid {
                binding_id: event.binding_id,
                log_index: event.log_index,
                reason,
            };
            if event.log_index < self.floor {
                fills.push(None);
                continue;
            }
            if last.is_some_and(|l| event.log_index < l) {
                return Err(invalid("log index goes down"));
            }
            last = Some(event.log_index);
            if event.order.len() > ORDER_BYTES_MAX {
                return Err(invalid("order longer than 32 bytes"));
            }
            if event.mode > 2 {
                return Err(invalid("mode is not 0 (AXB), 1 (AXN) or 2 (AXE)"));
            }
            if event.kind == EventKind::Created {
                if event.x.is_none() {
                    return Err(invalid("Created without X"));
                }
                fills.push(None);
                continue;
            }
            if !event.x.is_none() && event.created_s != 0 {
                fills.push(None);
                continue;
            }
            // A binding created earlier in this batch, then one in memory.
            let found = events[..i]
                .iter()
                .rev()
                .find(|e| e.kind == EventKind::Created && e.binding_id == event.binding_id)
                .map(|e| (e.x, e.at_s))
                .or_else(|| self.created_in_memory(event.binding_id));
            match found {
                Some((x, created_s)) => fills.push(Some(Fill {
                    x: if event.x.is_none() { x } else { event.x },
                    created_s: (event.created_s == 0).then_some(created_s),
                })),
                None => fills.push(None),
            }
        }
        Ok(fills)
    }

    /// X and creation time of a binding created in the open segment.
    fn created_in_memory(&self, binding_id: u64) -> Option<(Number, u32)> {
        self.open
            .as_ref()
            .and_then(|o| o.index.created.get(&binding_id))
            .copied()
    }

    fn append_one(&mut self, event: &Event) -> Result<(), HistoryError> {
        let full = self.open.as_ref().is_some_and(|o| {
            (o.meta.records >= self.config.segment_records_max
                || o.meta.data_bytes >= SEGMENT_BYTES_MAX)
                && event.log_index > o.meta.last_index
        });
        if full {
            self.seal()?;
        }
        let mut open = match self.open.take() {
            Some(open) => open,
            None => self.create_segment(event)?,
        };
        self.add_record(&mut open, event);
        self.open = Some(open);
        Ok(())
    }

    /// Encodes one event into the open segment's buffer and indexes it.
    fn add_record(&mut self, open: &mut Open, event: &Event) {
        let offset = open.meta.data_bytes;
        let start = open.buffer.len();
        let len = record::encode(event, open.base, &mut open.buffer);
        // The paired check STYLE asks for: what goes to disk decodes back.
        debug_assert_eq!(
            record::decode(&open.buffer[start..], open.base).map(|(e, n)| (e.binding_id, n)),
            Ok((event.binding_id, len))
        );
        // Cannot truncate: `data_bytes` stays below SEGMENT_BYTES_MAX plus
        // one log entry's records, far below 4 GiB.
        open.index.add(offset as u32, event);
        open.meta
            .add(event, index::span_s(event).unwrap_or(u32::MAX));
        open.meta.data_bytes += len as u64;
        self.last_index = Some(event.log_index);
    }

    fn create_segment(&mut self, first: &Event) -> Result<Open, HistoryError> {
        let base = Base {
            first_index: first.log_index,
            at_s: first.at_s,
        };
        let data_path = self
            .dir
            .join(segment::file_name(base.first_index, DATA_SUFFIX));
        // Real phone numbers: private to the node's user, like every file
        // of the data directory.
        let data = crate::sys::open_or_create_private(
            OpenOptions::new().read(true).write(true).truncate(true),
            &data_path,
        )
        .map_err(io(&data_path))?;
        let header = segment::header(base);
        data.write_all_at(&header, 0).map_err(io(&data_path))?;
        let meta = Meta {
            data_bytes: header.len() as u64,
            ..Meta::default()
        };
        Ok(Open {
            base,
            meta,
            data,
            data_path,
            written: header.len() as u64,
            buffer: Vec::with_capacity(WRITE_BLOCK_BYTES * 2),
            index: self
                .spare
                .take()
                .unwrap_or_else(|| MemIndex::with_capacity(self.config.memory_index_records())),
        })
    }

    /// Seals the open segment: writes its buffer and hands the index to a
    /// seal thread (waiting first for the previous seal, so at most two
    /// segment indexes are ever in memory).
    fn seal(&mut self) -> Result<(), HistoryError> {
        self.poll_pending(true)?;
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        flush(&mut open)?;
        let index_path = self
            .dir
            .join(segment::file_name(open.base.first_index, INDEX_SUFFIX));
        let mem = Arc::new(std::mem::take(&mut open.index));
        let data = open.data.try_clone().map_err(io(&open.data_path))?;
        let thread = {
            let (mem, meta, path) = (Arc::clone(&mem), open.meta, index_path.clone());
            std::thread::Builder::new()
                .name("history-seal".into())
                .spawn(move || {
                    data.sync_all()?;
                    index::write(&path, &mem, &meta)
                })
                .map_err(io(&index_path))?
        };
        self.pending = Some(Pending {
            first_index: open.base.first_index,
            thread,
        });
        self.sealed.push(Sealed {
            base: open.base,
            meta: open.meta,
            data: open.data,
            data_path: open.data_path,
            index_path,
            index: Index::Memory(mem),
        });
        Ok(())
    }

    /// Takes a finished seal's index file (or waits for it with `wait`).
    pub(super) fn poll_pending(&mut self, wait: bool) -> Result<(), HistoryError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        if !wait && !pending.thread.is_finished() {
            self.pending = Some(pending);
            return Ok(());
        }
        let segment = self
            .sealed
            .iter_mut()
            .find(|s| s.base.first_index == pending.first_index);
        let result = pending.thread.join();
        let Some(segment) = segment else {
            return Ok(());
        };
        match result {
            Ok(Ok(file_index)) => {
                let memory = std::mem::replace(&mut segment.index, Index::File(file_index));
                // The seal thread let go of its reference before it ended:
                // the memory index is ours to reuse for the next segment.
                if let Index::Memory(arc) = memory {
                    if let Ok(mut mem) = Arc::try_unwrap(arc) {
                        mem.clear();
                        self.spare = Some(mem);
                    }
                }
                Ok(())
            }
            // The memory index stays: queries still work, and `open` will
            // rebuild the index file from the data.
            Ok(Err(source)) => Err(HistoryError::Io {
                path: segment.index_path.clone(),
                source,
            }),
            Err(_) => panic!("the history seal thread panicked"),
        }
    }

    /// Makes every event appended so far durable (fsync): the data of the
    /// open segment and of a segment being sealed (its data only: its index
    /// file can be rebuilt from the data, so `sync` does not wait for the
    /// seal). `through_index` is the log index the caller needs durable;
    /// everything appended is synced.
    pub fn sync(&mut self, through_index: u64) -> Result<(), HistoryError> {
        let _ = through_index;
        self.poll_pending(false)?;
        for segment in &self.sealed {
            if matches!(segment.index, Index::Memory(_)) {
                segment.data.sync_data().map_err(io(&segment.data_path))?;
            }
        }
        if let Some(open) = &mut self.open {
            flush(open)?;
            open.data.sync_data().map_err(io(&open.data_path))?;
        }
        Ok(())
    }

    /// Drops whole sealed segments whose newest record is older than
    /// `now_s - retention_s`: two unlinks each, nothing rewritten. A
    /// segment still being sealed (the newest, in practice) waits for the
    /// next purge: purging never waits for the seal thread.
    pub fn purge(&mut self, now_s: u32) -> Result<PurgeReport, HistoryError> {
        self.poll_pending(false)?;
        let cutoff = now_s.saturating_sub(self.config.retention_s);
        let mut report = PurgeReport::default();
        while self
            .sealed
            .first()
            .is_some_and(|s| s.meta.max_at_s < cutoff && matches!(s.index, Index::File(_)))
        {
            let segment = self.sealed.remove(0);
            let index_bytes = std::fs::metadata(&segment.index_path).map_or(0, |m| m.len());
            std::fs::remove_file(&segment.index_path).map_err(io(&segment.index_path))?;
            std::fs::remove_file(&segment.data_path).map_err(io(&segment.data_path))?;
            report.segments += 1;
            report.records += segment.meta.records;
            report.bytes += segment.meta.data_bytes + index_bytes;
        }
        if report.segments > 0 {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))?;
        }
        Ok(report)
    }
}

impl Drop for History {
    /// A clean close: writes the buffer (no fsync: `sync` is the durability
    /// point) and waits for a seal in progress, so the directory can be
    /// opened again at once.
    fn drop(&mut self) {
        if let Some(open) = &mut self.open {
            let _ = flush(open);
        }
        let _ = self.poll_pending(true);
    }
}

/// Writes the open segment's buffer to its data file.
fn flush(open: &mut Open) -> Result<(), HistoryError> {
    if open.buffer.is_empty() {
        return Ok(());
    }
    open.data
        .write_all_at(&open.buffer, open.written)
        .map_err(io(&open.data_path))?;
    open.written += open.buffer.len() as u64;
    open.buffer.clear();
    Ok(())
}
