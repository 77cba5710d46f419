//! Checking a shard end to end (for tests and `x700 check`): every page
//! against its checksum, every record, every index key and the counters.

use super::*;
use std::sync::Arc;

impl Shard {
    /// Checks every page of the four table files against its checksum.
    /// Reads every byte: `Store::open_checked` and `x700 check` run it.
    pub fn verify_pages(&self) -> Result<(), TableError> {
        self.records.verify_pages()?;
        self.cold.verify_pages()?;
        self.index.primary_file().verify_pages()?;
        self.index.overflow_file().verify_pages()
    }

    /// Checks the pages a lookup reads (records, index, overflow) here and
    /// now, one job per file (`Store::check_for_serving` runs them in
    /// parallel), and arms the check of the cold file, which runs after
    /// the start: each cold page is checked on first touch, and the
    /// returned check (with a handle on the file) finishes the rest in the
    /// background (docs/STORAGE.md section 14).
    pub fn arm_cold_check(
        &mut self,
    ) -> Result<(Arc<crate::table::page_check::PageCheck>, std::fs::File), TableError> {
        let file = self.cold.file_handle()?;
        Ok((self.cold.arm_check(), file))
    }

    /// The checks of the files a lookup reads, as jobs that may run in
    /// parallel.
    pub fn hot_page_checks(
        &self,
    ) -> [Box<dyn Fn() -> Result<(), TableError> + Send + Sync + '_>; 3] {
        let (records, primary, overflow) = (
            &self.records,
            self.index.primary_file(),
            self.index.overflow_file(),
        );
        [
            Box::new(move || records.verify_pages()),
            Box::new(move || primary.verify_pages()),
            Box::new(move || overflow.verify_pages()),
        ]
    }

    /// Checks the shard end to end: every record well formed, every index
    /// key findable, counters consistent. Reads every byte: for tests and
    /// `x700 check`, not for opening.
    pub fn verify(&self) -> Result<(), TableError> {
        self.verify_pages()?;
        let corrupt = |kind: FileKind, offset: u64, reason: String| TableError::Corrupt {
            path: self.dir.join(kind.file_name()).display().to_string(),
            offset,
            reason,
        };
        self.index
            .verify()
            .map_err(|reason| corrupt(FileKind::Index, 0, reason))?;
        let mut live = 0;
        let mut listed = 0;
        let mut keys = 0;
        for (slot, record) in self.records.items()[..self.counters.records_used as usize]
            .iter()
            .enumerate()
        {
            let offset = (crate::table::layout::HEADER_BYTES + slot * 32) as u64;
            if record.mode_bits() == meta::MODE_FREE {
                continue;
            }
            let fields_ok = record.x().is_well_formed()
                && !record.x().is_none()
                && record.a().is_well_formed()
                && record.b().is_well_formed()
                && record.generation() >= 1
                && record.meta & (3 << 30) == 0;
            if !fields_ok {
                return Err(corrupt(
                    FileKind::Records,
                    offset,
                    format!("malformed record {record:?}"),
                ));
            }
            live += 1;
            #[allow(clippy::cast_possible_truncation)] // slot < 2^24
            if record.is_representative() {
                listed += self
                    .verify_x_list(slot as u32)
                    .map_err(|reason| corrupt(FileKind::Cold, offset, reason))?;
            }
            let (parties, count) = record.index_keys();
            for &party in &parties[..count] {
                keys += 1;
                let hash = crate::table::hash::key_hash(record.x(), party);
                #[allow(clippy::cast_possible_truncation)] // slot < 2^24
                let slot = slot as u32;
                if self.index.find(hash, |s| s == slot).is_none() {
                    return Err(corrupt(
                        FileKind::Records,
                        offset,
                        format!(
                            "key ({}, {party:?}) of slot {slot} is not in the index",
                            record.x()
                        ),
                    ));
                }
            }
        }
        if live != self.counters.live_bindings
            || listed != live
            || keys != self.index.state().entries
        {
            return Err(corrupt(
                FileKind::Records,
                0,
                format!(
                    "counted {live} live / {listed} on X lists / {keys} keys; meta says {} live / {} keys",
                    self.counters.live_bindings,
                    self.index.state().entries
                ),
            ));
        }
        Ok(())
    }

    /// Walks the X list headed by representative `head`: every member has
    /// the same X, is live, is no representative itself, and links back.
    /// Returns the list's length.
    fn verify_x_list(&self, head: u32) -> Result<u32, String> {
        let x = self.records.items()[head as usize].x;
        let cold = self.cold.items();
        if cold[head as usize].x_prev != 0 {
            return Err(format!("representative slot {head} has a previous binding"));
        }
        let mut length = 1;
        let (mut previous, mut next) = (head, cold[head as usize].x_next);
        while next != 0 {
            let slot = next - 1;
            let record = self
                .records
                .items()
                .get(slot as usize)
                .ok_or("X list leaves the table")?;
            if record.x != x
                || !record.is_live()
                || record.is_representative()
                || cold[slot as usize].x_prev != previous + 1
            {
                return Err(format!("X list of slot {head} is broken at slot {slot}"));
            }
            length += 1;
            if length > self.counters.live_bindings {
                return Err(format!("X list of slot {head} loops"));
            }
            (previous, next) = (slot, cold[slot as usize].x_next);
        }
        Ok(length)
    }
}
