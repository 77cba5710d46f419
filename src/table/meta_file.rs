//! The shard meta file: two copies of `ShardMeta`, one per 4 KiB page,
//! written alternately with `pwrite` + `fdatasync`. A torn write damages at
//! most the copy being written; the other still verifies, so opening picks
//! the valid copy with the highest sequence.

use super::error::TableError;
use super::layout::{checksum_of, ShardMeta, FORMAT_VERSION, META_MAGIC};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes between the two copies.
const COPY_STRIDE: u64 = 4096;
/// Name of the file inside a shard directory.
pub const META_FILE_NAME: &str = "meta";

/// An open meta file.
pub struct MetaFile {
    path: PathBuf,
    file: File,
    sequence: u64,
}

impl MetaFile {
    /// Creates the file with `meta` in both copies.
    pub fn create(dir: &Path, meta: &ShardMeta) -> Result<MetaFile, TableError> {
        let path = dir.join(META_FILE_NAME);
        let file = crate::sys::create_private(OpenOptions::new().read(true).write(true), &path)
            .map_err(|e| TableError::io(&path, e))?;
        file.set_len(2 * COPY_STRIDE)
            .map_err(|e| TableError::io(&path, e))?;
        let mut meta_file = MetaFile {
            path,
            file,
            sequence: 0,
        };
        meta_file.write(meta)?;
        meta_file.write(meta)?;
        Ok(meta_file)
    }

    /// Opens the file and returns the newest valid copy.
    pub fn open(dir: &Path) -> Result<(MetaFile, ShardMeta), TableError> {
        let path = dir.join(META_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| TableError::io(&path, e))?;
        let mut best: Option<ShardMeta> = None;
        let mut reasons = Vec::new();
        for copy in 0..2u64 {
            let mut bytes = [0u8; std::mem::size_of::<ShardMeta>()];
            if let Err(e) = file.read_exact_at(&mut bytes, copy * COPY_STRIDE) {
                reasons.push(format!("copy {copy}: {e}"));
                continue;
            }
            let meta: ShardMeta = bytemuck::pod_read_unaligned(&bytes);
            if meta.magic != META_MAGIC {
                reasons.push(format!("copy {copy}: bad magic"));
            } else if meta.checksum != checksum_of(&meta) {
                reasons.push(format!("copy {copy}: checksum mismatch"));
            } else if meta.format_version != FORMAT_VERSION {
                return Err(TableError::WrongVersion {
                    path: path.display().to_string(),
                    found: meta.format_version,
                    expected: FORMAT_VERSION,
                });
            } else if best.is_none_or(|b| meta.sequence > b.sequence) {
                best = Some(meta);
            }
        }
        let meta = best.ok_or_else(|| TableError::BadHeader {
            path: path.display().to_string(),
            reason: format!("no valid meta copy ({})", reasons.join("; ")),
        })?;
        Ok((
            MetaFile {
                path,
                file,
                sequence: meta.sequence,
            },
            meta,
        ))
    }

    /// Writes the next copy durably. Sets sequence and checksum.
    pub fn write(&mut self, meta: &ShardMeta) -> Result<(), TableError> {
        let mut meta = *meta;
        self.sequence += 1;
        meta.sequence = self.sequence;
        meta.checksum = checksum_of(&meta);
        let offset = (self.sequence % 2) * COPY_STRIDE;
        self.file
            .write_all_at(bytemuck::bytes_of(&meta), offset)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| TableError::io(&self.path, e))
    }

    /// Path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next copy to write, sequence and checksum set, for a checkpoint
    /// that writes it later (`checkpoint::ShardImage::persist`, at offset
    /// `(sequence % 2) * 4096`).
    pub fn next_copy(&mut self, meta: &ShardMeta) -> ShardMeta {
        let mut meta = *meta;
        self.sequence += 1;
        meta.sequence = self.sequence;
        meta.checksum = checksum_of(&meta);
        meta
    }

    /// Sequence of the newest copy.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// A second handle on the file.
    pub fn handle(&self) -> Result<File, TableError> {
        self.file
            .try_clone()
            .map_err(|e| TableError::io(&self.path, e))
    }
}
