//! The log's small state, in `log/state`: the Raft vote and the last
//! purged position (pages 0 and 1), and the committed position (pages 2
//! and 3). Each is kept in two copies, one per 4 KiB page, written
//! alternately; a torn write damages only the copy being written, and
//! opening takes the valid copy with the higher sequence.
//!
//! The vote and purge copies are written with `pwrite` + `fdatasync`: a
//! vote that went back after a crash could elect two leaders in a term.
//! The committed copies are written with `pwrite` alone (see
//! `StateFile::write_committed`): a committed position that goes back
//! after a power loss is safe, Raft learns it again. Keeping them in pages
//! of their own means an unsynced write never touches a page the vote
//! lives in.
//!
//! Vote copy layout (96 bytes, little-endian, at bytes 0 and 4096):
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic `X700STAT` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | flags: bit 0 a vote is stored, bit 1 the vote is committed |
//! | 16 | 8 | sequence |
//! | 24 | 8 | store nonce |
//! | 32 | 8 | vote term |
//! | 40 | 8 | vote node id |
//! | 48 | 8 | last purged index + 1 (0: nothing purged) |
//! | 56 | 8 | last purged term |
//! | 64 | 8 | last purged leader |
//! | 72 | 20 | zero |
//! | 92 | 4 | CRC32C of bytes 0..92 |
//!
//! Committed copy layout (64 bytes, little-endian, at bytes 8192 and
//! 12288; a file without them, from before step 6, stores none):
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic `X700CMIT` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | zero |
//! | 16 | 8 | sequence (its own, not the vote copies') |
//! | 24 | 8 | store nonce |
//! | 32 | 8 | committed index + 1 (0: none) |
//! | 40 | 8 | committed term |
//! | 48 | 8 | committed leader |
//! | 56 | 4 | zero |
//! | 60 | 4 | CRC32C of bytes 0..60 |

use super::{LogError, LogPosition};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = *b"X700STAT";
const VERSION: u32 = 1;
const COPY_BYTES: usize = 96;
const COPY_STRIDE: u64 = 4096;
const COMMITTED_MAGIC: [u8; 8] = *b"X700CMIT";
const COMMITTED_VERSION: u32 = 1;
const COMMITTED_BYTES: usize = 64;
/// The committed copies follow the two vote copies.
const COMMITTED_OFFSET: u64 = 2 * COPY_STRIDE;
/// File name inside the log directory.
pub const STATE_FILE_NAME: &str = "state";

/// A Raft vote as the log stores it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredVote {
    /// Term.
    pub term: u64,
    /// Node voted for.
    pub node: u64,
    /// Whether a quorum granted it.
    pub committed: bool,
}

/// What the state file holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// The vote, if one was ever saved.
    pub vote: Option<StoredVote>,
    /// The last purged entry.
    pub purged: Option<LogPosition>,
    /// The last committed entry openraft saved, as stored: it may lag (it
    /// is written without `fdatasync`) and may name an entry a crash took
    /// from the log (`Log` clamps it to the log when it opens).
    pub committed: Option<LogPosition>,
}

/// The open state file.
pub struct StateFile {
    path: PathBuf,
    file: File,
    sequence: u64,
    committed_sequence: u64,
    nonce: u64,
}

fn encode(state: &LogState, sequence: u64, nonce: u64) -> [u8; COPY_BYTES] {
    let mut bytes = [0u8; COPY_BYTES];
    bytes[0..8].copy_from_slice(&MAGIC);
    bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let vote = state.vote.unwrap_or_default();
    let flags = u32::from(state.vote.is_some()) | (u32::from(vote.committed) << 1);
    bytes[12..16].copy_from_slice(&flags.to_le_bytes());
    bytes[16..24].copy_from_slice(&sequence.to_le_bytes());
    bytes[24..32].copy_from_slice(&nonce.to_le_bytes());
    bytes[32..40].copy_from_slice(&vote.term.to_le_bytes());
    bytes[40..48].copy_from_slice(&vote.node.to_le_bytes());
    let purged = state.purged.unwrap_or_default();
    let purged_plus_one = state.purged.map_or(0, |p| p.index + 1);
    bytes[48..56].copy_from_slice(&purged_plus_one.to_le_bytes());
    bytes[56..64].copy_from_slice(&purged.term.to_le_bytes());
    bytes[64..72].copy_from_slice(&purged.leader.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..92]);
    bytes[92..96].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8; COPY_BYTES], nonce: u64) -> Result<(u64, LogState), String> {
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let long = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if bytes[0..8] != MAGIC {
        return Err("bad magic".into());
    }
    if crc32c::crc32c(&bytes[..92]) != word(92) {
        return Err("checksum mismatch".into());
    }
    if word(8) != VERSION {
        return Err(format!(
            "format version {}, this build reads {VERSION}",
            word(8)
        ));
    }
    if long(24) != nonce {
        return Err("belongs to another data directory".into());
    }
    let flags = word(12);
    let vote = (flags & 1 == 1).then(|| StoredVote {
        term: long(32),
        node: long(40),
        committed: flags & 2 == 2,
    });
    let purged = (long(48) > 0).then(|| LogPosition {
        index: long(48) - 1,
        term: long(56),
        leader: long(64),
    });
    Ok((
        long(16),
        LogState {
            vote,
            purged,
            committed: None,
        },
    ))
}

fn encode_committed(
    committed: Option<LogPosition>,
    sequence: u64,
    nonce: u64,
) -> [u8; COMMITTED_BYTES] {
    let mut bytes = [0u8; COMMITTED_BYTES];
    bytes[0..8].copy_from_slice(&COMMITTED_MAGIC);
    bytes[8..12].copy_from_slice(&COMMITTED_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&sequence.to_le_bytes());
    bytes[24..32].copy_from_slice(&nonce.to_le_bytes());
    let position = committed.unwrap_or_default();
    let index_plus_one = committed.map_or(0, |p| p.index + 1);
    bytes[32..40].copy_from_slice(&index_plus_one.to_le_bytes());
    bytes[40..48].copy_from_slice(&position.term.to_le_bytes());
    bytes[48..56].copy_from_slice(&position.leader.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// A committed copy's sequence and position, or `None` when the copy is
/// absent (zeros: a file from before step 6), torn, or of another
/// directory: any of them only means the committed position is not known.
fn decode_committed(
    bytes: &[u8; COMMITTED_BYTES],
    nonce: u64,
) -> Option<(u64, Option<LogPosition>)> {
    let long = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let crc = u32::from_le_bytes([bytes[60], bytes[61], bytes[62], bytes[63]]);
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if bytes[0..8] != COMMITTED_MAGIC
        || crc32c::crc32c(&bytes[..60]) != crc
        || version != COMMITTED_VERSION
        || long(24) != nonce
    {
        return None;
    }
    let committed = (long(32) > 0).then(|| LogPosition {
        index: long(32) - 1,
        term: long(40),
        leader: long(48),
    });
    Some((long(16), committed))
}

impl StateFile {
    /// Opens the state file, or creates an empty one.
    pub fn open_or_create(dir: &Path, nonce: u64) -> Result<(StateFile, LogState), LogError> {
        let path = dir.join(STATE_FILE_NAME);
        let existed = path.exists();
        let file = crate::sys::open_or_create_private(
            OpenOptions::new().read(true).write(true).truncate(false),
            &path,
        )
        .map_err(|e| LogError::io(&path, e))?;
        let mut state_file = StateFile {
            path,
            file,
            sequence: 0,
            committed_sequence: 0,
            nonce,
        };
        if !existed {
            state_file.write(&LogState::default())?;
            state_file.write(&LogState::default())?;
            super::sync_dir(dir)?;
            return Ok((state_file, LogState::default()));
        }
        let mut best: Option<(u64, LogState)> = None;
        let mut reasons = Vec::new();
        for copy in 0..2u64 {
            let mut bytes = [0u8; COPY_BYTES];
            if let Err(e) = state_file
                .file
                .read_exact_at(&mut bytes, copy * COPY_STRIDE)
            {
                reasons.push(format!("copy {copy}: {e}"));
                continue;
            }
            match decode(&bytes, nonce) {
                Ok((sequence, state)) if best.is_none_or(|(s, _)| sequence > s) => {
                    best = Some((sequence, state));
                }
                Ok(_) => {}
                Err(reason) => reasons.push(format!("copy {copy}: {reason}")),
            }
        }
        let (sequence, mut state) = best.ok_or_else(|| LogError::Corrupt {
            path: state_file.path.display().to_string(),
            offset: 0,
            reason: format!("no valid copy ({})", reasons.join("; ")),
        })?;
        state_file.sequence = sequence;
        let mut newest: Option<(u64, Option<LogPosition>)> = None;
        for copy in 0..2u64 {
            let mut bytes = [0u8; COMMITTED_BYTES];
            // A short file (from before step 6) has no committed copies.
            if state_file
                .file
                .read_exact_at(&mut bytes, COMMITTED_OFFSET + copy * COPY_STRIDE)
                .is_err()
            {
                continue;
            }
            if let Some((sequence, committed)) = decode_committed(&bytes, nonce) {
                if newest.is_none_or(|(s, _)| sequence > s) {
                    newest = Some((sequence, committed));
                }
            }
        }
        if let Some((sequence, committed)) = newest {
            state_file.committed_sequence = sequence;
            state.committed = committed;
        }
        Ok((state_file, state))
    }

    /// Writes the vote and purge position of `state` durably (returns
    /// after `fdatasync`); its `committed` is not written here.
    pub fn write(&mut self, state: &LogState) -> Result<(), LogError> {
        self.sequence += 1;
        let bytes = encode(state, self.sequence, self.nonce);
        let offset = (self.sequence % 2) * COPY_STRIDE;
        self.file
            .write_all_at(&bytes, offset)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| LogError::io(&self.path, e))
    }

    /// Writes the committed position into the page cache, without
    /// `fdatasync`. openraft saves it before every apply, so a sync here
    /// would double the syncs of the write path. Without one, the position
    /// survives a process crash (`kill -9`: the kernel still holds the
    /// page) and may go back after a power loss, which is safe: Raft
    /// learns the commit index again from the leader, and a one-member
    /// cluster's recovery does not rely on it (`replication::recover`). It
    /// may also be ahead of the durable log (a follower saves it before its
    /// appends are synced): `Log::open` clamps it to the log.
    pub fn write_committed(&mut self, committed: Option<LogPosition>) -> Result<(), LogError> {
        self.committed_sequence += 1;
        let bytes = encode_committed(committed, self.committed_sequence, self.nonce);
        let offset = COMMITTED_OFFSET + (self.committed_sequence % 2) * COPY_STRIDE;
        self.file
            .write_all_at(&bytes, offset)
            .map_err(|e| LogError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_valid_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, state) = StateFile::open_or_create(dir.path(), 5).unwrap();
        assert_eq!(state, LogState::default());
        let first = LogState {
            vote: Some(StoredVote {
                term: 2,
                node: 1,
                committed: true,
            }),
            purged: None,
            committed: None,
        };
        let second = LogState {
            vote: first.vote,
            purged: Some(LogPosition {
                index: 9,
                term: 2,
                leader: 1,
            }),
            committed: None,
        };
        file.write(&first).unwrap();
        file.write(&second).unwrap();
        drop(file);
        assert_eq!(StateFile::open_or_create(dir.path(), 5).unwrap().1, second);
        // Damage the newer copy: the older one is still there.
        let path = dir.path().join(STATE_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let newer = if bytes[16] > bytes[4096 + 16] {
            0
        } else {
            4096
        };
        bytes[newer + 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(StateFile::open_or_create(dir.path(), 5).unwrap().1, first);
        assert!(StateFile::open_or_create(dir.path(), 6).is_err());
    }

    /// The committed copies live apart from the vote: the newest valid one
    /// wins, a torn one falls back to the other, a file without them (step
    /// 5) or of another directory stores none, and writing them never
    /// changes the vote.
    #[test]
    fn keeps_the_newest_committed_copy_apart_from_the_vote() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, state) = StateFile::open_or_create(dir.path(), 5).unwrap();
        assert_eq!(state.committed, None);
        let vote = LogState {
            vote: Some(StoredVote {
                term: 3,
                node: 2,
                committed: true,
            }),
            ..LogState::default()
        };
        file.write(&vote).unwrap();
        let at = |index| LogPosition {
            index,
            term: 3,
            leader: 2,
        };
        file.write_committed(Some(at(7))).unwrap();
        file.write_committed(Some(at(8))).unwrap();
        drop(file);
        let (_, reopened) = StateFile::open_or_create(dir.path(), 5).unwrap();
        assert_eq!(reopened.vote, vote.vote);
        assert_eq!(reopened.committed, Some(at(8)));
        // Tear the newer committed copy: the older one is still there.
        let path = dir.path().join(STATE_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let newer = if bytes[8192 + 16] > bytes[12288 + 16] {
            8192
        } else {
            12288
        };
        bytes[newer + 33] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, torn) = StateFile::open_or_create(dir.path(), 5).unwrap();
        assert_eq!(torn.committed, Some(at(7)));
        assert_eq!(torn.vote, vote.vote);
        // A file cut back to the vote copies (as step 5 wrote it) stores
        // no committed position and still opens.
        bytes.truncate(8192);
        std::fs::write(&path, &bytes).unwrap();
        let (_, short) = StateFile::open_or_create(dir.path(), 5).unwrap();
        assert_eq!(short.committed, None);
        assert_eq!(short.vote, vote.vote);
    }

    /// The committed copy example of docs/STORAGE.md section 16, byte for
    /// byte (the CRC is computed, not written out there).
    #[test]
    fn the_committed_copy_matches_the_documented_example() {
        let position = LogPosition {
            index: 5,
            term: 2,
            leader: 1,
        };
        let bytes = encode_committed(Some(position), 3, 0x1122_3344_5566_7788);
        let documented: Vec<u8> = "58 37 30 30 43 4d 49 54 01 00 00 00 00 00 00 00 \
             03 00 00 00 00 00 00 00 88 77 66 55 44 33 22 11 \
             06 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 \
             01 00 00 00 00 00 00 00 00 00 00 00"
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        assert_eq!(&bytes[..60], &documented[..]);
        assert_eq!(
            decode_committed(&bytes, 0x1122_3344_5566_7788),
            Some((3, Some(position)))
        );
        assert_eq!(decode_committed(&bytes, 1), None);
    }
}
