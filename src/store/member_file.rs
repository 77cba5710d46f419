//! `DIR/member`: which cluster member a data directory belongs to. Written
//! the first time a node starts on the directory with `--raft`, checked at
//! every later start: a directory holds one member's log and votes, so
//! starting it under another node id (or in another cluster) would make two
//! members of one, or vote twice in a term. A wiped member rejoins under a
//! new id (openraft requires ids never to be reused).
//!
//! Layout (40 bytes, little-endian, docs/STORAGE.md "The member file"):
//! ```text
//! 0   8  magic     "X700MEMB"
//! 8   4  version   1
//! 12  4  crc32c    of bytes 16..40
//! 16  8  node_id
//! 24  8  cluster_id
//! 32  8  reserved  0
//! ```
//! It is written once (temporary file, fsync, rename, fsync of the
//! directory) and never changed.

use std::io::Write;
use std::path::Path;

/// The file's name in the data directory.
pub const MEMBER_FILE_NAME: &str = "member";
/// The file's size.
pub const MEMBER_FILE_BYTES: usize = 40;
const MAGIC: &[u8; 8] = b"X700MEMB";
const VERSION: u32 = 1;

/// Who the directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberIds {
    /// The member's node id.
    pub node_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
}

/// Why a directory may not be used as asked.
#[derive(Debug, thiserror::Error)]
pub enum MemberFileError {
    /// The directory belongs to another member or cluster.
    #[error(
        "{dir} belongs to node {stored_node} of cluster {stored_cluster}, not node {node} of \
         cluster {cluster}: start it with its own --node-id and cluster id, or give a new \
         member an empty directory (and a new id)"
    )]
    Mismatch {
        /// The directory.
        dir: String,
        /// What the file says.
        stored_node: u64,
        /// What the file says.
        stored_cluster: u64,
        /// What this start asked for.
        node: u64,
        /// What this start asked for.
        cluster: u64,
    },
    /// The file is not a member file (or is damaged).
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Encodes the file.
pub fn encode(ids: MemberIds) -> [u8; MEMBER_FILE_BYTES] {
    let mut bytes = [0u8; MEMBER_FILE_BYTES];
    bytes[0..8].copy_from_slice(MAGIC);
    bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&ids.node_id.to_le_bytes());
    bytes[24..32].copy_from_slice(&ids.cluster_id.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes the file; the error says what is wrong.
pub fn decode(bytes: &[u8]) -> Result<MemberIds, &'static str> {
    if bytes.len() != MEMBER_FILE_BYTES {
        return Err("not 40 bytes long");
    }
    if &bytes[0..8] != MAGIC {
        return Err("not a member file (bad magic)");
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    if u32_at(8) != VERSION {
        return Err("unknown member file version");
    }
    if u32_at(12) != crc32c::crc32c(&bytes[16..]) {
        return Err("checksum mismatch");
    }
    if u64_at(32) != 0 {
        return Err("reserved bytes are not zero");
    }
    Ok(MemberIds {
        node_id: u64_at(16),
        cluster_id: u64_at(24),
    })
}

/// Reads the member file of `dir`, if there is one.
pub fn read(dir: &Path) -> Result<Option<MemberIds>, MemberFileError> {
    let path = dir.join(MEMBER_FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes)
            .map(Some)
            .map_err(|reason| MemberFileError::Corrupt {
                path: path.display().to_string(),
                reason,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MemberFileError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Claims `dir` for `ids`: writes the member file on first use, and
/// refuses a directory that belongs to another node id or cluster.
pub fn claim(dir: &Path, ids: MemberIds) -> Result<(), MemberFileError> {
    if let Some(stored) = read(dir)? {
        if stored == ids {
            return Ok(());
        }
        return Err(MemberFileError::Mismatch {
            dir: dir.display().to_string(),
            stored_node: stored.node_id,
            stored_cluster: stored.cluster_id,
            node: ids.node_id,
            cluster: ids.cluster_id,
        });
    }
    let path = dir.join(MEMBER_FILE_NAME);
    let temporary = dir.join(format!("{MEMBER_FILE_NAME}.new"));
    let io = |source| MemberFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = crate::sys::open_or_create_private(
        std::fs::OpenOptions::new().write(true).truncate(true),
        &temporary,
    )
    .map_err(io)?;
    (&file).write_all(&encode(ids)).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{claim, decode, encode, read, MemberFileError, MemberIds};

    #[test]
    fn the_file_round_trips_and_damage_is_named() {
        let ids = MemberIds {
            node_id: 4,
            cluster_id: 7,
        };
        let bytes = encode(ids);
        assert_eq!(&bytes[0..8], b"X700MEMB");
        assert_eq!(decode(&bytes), Ok(ids));
        let mut flipped = bytes;
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped), Err("checksum mismatch"));
        assert!(decode(&bytes[..39]).is_err());
    }

    #[test]
    fn a_directory_is_claimed_once_and_refuses_another_id() {
        let dir = tempfile::tempdir().unwrap();
        let ids = MemberIds {
            node_id: 2,
            cluster_id: 1,
        };
        assert_eq!(read(dir.path()).unwrap(), None);
        claim(dir.path(), ids).unwrap();
        claim(dir.path(), ids).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(ids));
        let other_node = MemberIds { node_id: 3, ..ids };
        assert!(matches!(
            claim(dir.path(), other_node),
            Err(MemberFileError::Mismatch {
                stored_node: 2,
                node: 3,
                ..
            })
        ));
        let other_cluster = MemberIds {
            cluster_id: 9,
            ..ids
        };
        assert!(claim(dir.path(), other_cluster).is_err());
    }
}
