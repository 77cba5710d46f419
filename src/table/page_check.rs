//! Checking a table file's pages after the node has started serving
//! (docs/STORAGE.md section 14): the cold file, which no lookup reads, is
//! checked in the background, and any page the shard touches before then
//! is checked on the spot. Either way no byte of a page is used before its
//! checksum matched.
//!
//! A page that does not match stops the process (`refuse`) with the
//! message a start would have given: the files and the log are untouched,
//! and the next start refuses the same page.

use super::error::TableError;
use super::mapped::PAGE_BYTES;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Exit status of a process that found a damaged page after it started.
pub const DAMAGED_PAGE_EXIT_STATUS: i32 = 74;
/// Pages the background check reads per `pread`.
const PAGES_PER_READ: usize = 256;

/// The pages of one table file still to check, and what they must match.
pub struct PageCheck {
    /// The table file, for messages.
    path: PathBuf,
    /// The `.sum` file, for messages.
    sums_path: PathBuf,
    /// Each page's CRC-32C as of the checkpoint the file was opened at.
    expected: Box<[u32]>,
    /// One bit per page: checked (or written since, so checked before).
    checked: Box<[AtomicU64]>,
    /// Pages not checked yet.
    left: AtomicUsize,
    /// Every page is checked.
    done: AtomicBool,
}

impl PageCheck {
    /// A check of the first `pages` pages of the file at `path` against
    /// `expected` (pages past its end must be zeros); pages `skip` says are
    /// already fine (written since the checkpoint) are not checked.
    pub fn new(
        path: PathBuf,
        sums_path: PathBuf,
        expected: &[u32],
        pages: usize,
        skip: impl Fn(usize) -> bool,
    ) -> PageCheck {
        let zero = super::file::zero_page_sum();
        let expected: Box<[u32]> = (0..pages)
            .map(|page| expected.get(page).copied().unwrap_or(zero))
            .collect();
        let checked: Box<[AtomicU64]> =
            (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        let mut left = pages;
        for page in (0..pages).filter(|&page| skip(page)) {
            checked[page / 64].fetch_or(1 << (page % 64), Ordering::Relaxed);
            left -= 1;
        }
        PageCheck {
            path,
            sums_path,
            expected,
            checked,
            left: AtomicUsize::new(left),
            done: AtomicBool::new(left == 0),
        }
    }

    /// True once every page is checked.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// True if `page` needs no check (checked, or past the pages the file
    /// had when it was opened).
    #[inline]
    pub fn is_checked(&self, page: usize) -> bool {
        page >= self.expected.len()
            || self.checked[page / 64].load(Ordering::Acquire) & (1 << (page % 64)) != 0
    }

    /// Checks `page`, whose bytes are `bytes` (the file's, or the mapping's
    /// while nothing wrote it), unless it is checked already.
    pub fn check(&self, page: usize, bytes: &[u8]) -> Result<(), TableError> {
        if self.is_checked(page) {
            return Ok(());
        }
        if super::file::page_sum(bytes) != self.expected[page] {
            // The background may read a page from the file just as a
            // checkpoint rewrites it; such a page was checked (by the shard,
            // before it wrote it) first.
            if self.is_checked(page) {
                return Ok(());
            }
            return Err(self.damaged(page));
        }
        self.mark(page);
        Ok(())
    }

    fn mark(&self, page: usize) {
        let bit = 1 << (page % 64);
        if self.checked[page / 64].fetch_or(bit, Ordering::AcqRel) & bit == 0
            && self.left.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.done.store(true, Ordering::Release);
        }
    }

    /// The error a damaged `page` gives.
    fn damaged(&self, page: usize) -> TableError {
        TableError::Corrupt {
            path: self.path.display().to_string(),
            offset: (page * PAGE_BYTES) as u64,
            reason: format!(
                "page {page} does not match its checksum in {} (damaged on disk)",
                self.sums_path.display()
            ),
        }
    }

    /// Checks every page not checked yet, reading them from `file` (not
    /// through the mapping, so checking them maps nothing into the
    /// process). Runs in a background thread.
    pub fn check_all(&self, file: &File) -> Result<(), TableError> {
        let pages = self.expected.len();
        let mut buffer = vec![0u8; PAGES_PER_READ * PAGE_BYTES];
        let mut first = 0;
        while first < pages && !self.is_done() {
            let count = PAGES_PER_READ.min(pages - first);
            if (first..first + count).all(|page| self.is_checked(page)) {
                first += count;
                continue;
            }
            let bytes = &mut buffer[..count * PAGE_BYTES];
            let read = read_fully(file, bytes, (first * PAGE_BYTES) as u64)
                .map_err(|e| TableError::io(&self.path, e))?;
            // Bytes past the end of the file read as zeros, as they are.
            bytes[read..].fill(0);
            for (i, page_bytes) in bytes.chunks(PAGE_BYTES).enumerate() {
                self.check(first + i, page_bytes)?;
            }
            // Checked pages need not stay in the page cache, where they
            // would push out the pages lookups read.
            crate::sys::drop_cached(file, (first * PAGE_BYTES) as u64, read as u64);
            first += count;
        }
        Ok(())
    }
}

/// Reads into `buffer` from `offset` until it is full or the file ends;
/// returns the bytes read.
fn read_fully(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut read = 0;
    while read < buffer.len() {
        match file.read_at(&mut buffer[read..], offset + read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(read)
}

/// Stops the process over a damaged page found after it started: nothing
/// from the page is used, the files and the log stay as they are, and the
/// next start refuses the same page.
pub fn refuse(error: &TableError) -> ! {
    eprintln!(
        "x700: {error}; stopping: a damaged table page is never used (restore the data \
         directory from a backup, or replace this member)"
    );
    std::process::exit(DAMAGED_PAGE_EXIT_STATUS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_of(pages: &[[u8; PAGE_BYTES]]) -> PageCheck {
        let sums: Vec<u32> = pages
            .iter()
            .map(|p| super::super::file::page_sum(p))
            .collect();
        PageCheck::new("t".into(), "t.sum".into(), &sums, pages.len(), |_| false)
    }

    #[test]
    fn pages_past_the_open_file_need_no_check() {
        // Regression: a file of one page grew, and its second page (in the
        // same bitmap word) was taken for one to check: index out of bounds.
        let check = check_of(&[[1; PAGE_BYTES]]);
        assert!(!check.is_checked(0));
        assert!(check.is_checked(1) && check.is_checked(64) && check.is_checked(10_000));
        assert!(check.check(1, &[9; PAGE_BYTES]).is_ok());
    }

    #[test]
    fn a_damaged_page_is_refused_and_a_good_one_counted_once() {
        let check = check_of(&[[1; PAGE_BYTES], [2; PAGE_BYTES]]);
        let error = check.check(1, &[3; PAGE_BYTES]).expect_err("damaged page");
        assert!(
            error.to_string().contains("page 1 does not match"),
            "{error}"
        );
        assert!(!check.is_done());
        check.check(0, &[1; PAGE_BYTES]).expect("page 0");
        check
            .check(0, &[7; PAGE_BYTES])
            .expect("checked pages are not read again");
        assert!(!check.is_done());
        check.check(1, &[2; PAGE_BYTES]).expect("page 1");
        assert!(check.is_done());
    }
}
