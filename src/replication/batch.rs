//! A write batch: the payload of one log entry. Every write request that an
//! event loop read in one iteration goes into one batch, so one Raft entry,
//! one append and one share of a group-commit `fdatasync` carry many writes.
//!
//! Payload layout (little-endian), as stored in a log record of kind 1:
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 4 | `now_s`: the proposer's clock when it proposed the batch |
//! | 4 | .. | writes, back to back |
//!
//! Each write: tenant scope count `u16` (`0xFFFF`: every tenant; `0xFFFE`:
//! every tenant and a credential id follows; bit 15 set on a count: that
//! many tenant ids and a credential id follows), then that many tenant ids
//! `u32`, then the credential id `u32` if one follows (the session that made
//! the write, for the traceability history), then the request frame exactly
//! as the client sent it (12-byte header with its length, then the body;
//! docs/PROTOCOL.md).
//!
//! Applying a batch is a pure function of the tables and the batch: the
//! time is never a clock read at apply time but the *applied clock*,
//! `store::clock::applied_now_s` of `now_s` and the time the shards reached
//! so far (kept in their checkpoints), so a replay (or a follower) reaches
//! the same state and the same binding ids, and a proposer whose clock is
//! behind or jumps ahead can neither take time back nor make it leap
//! (docs/STORAGE.md section 17).

use serde::{Deserialize, Serialize};

/// What applying a batch means: raised whenever one build would apply the
/// same batch to the same tables differently from the previous one (a new
/// rule in `server::apply`, another reading of a request frame). Members
/// must agree on it (`server::member_versions`, checked at CLUSTER_INIT and
/// CLUSTER_ADD_NODE), since every member applies every entry itself.
pub const APPLY_VERSION: u32 = 2;

/// Largest batch payload: bounds a log record and a proposal.
pub const BATCH_BYTES_MAX: usize = 1 << 20;
/// Tenant-scope count meaning "every tenant".
const ALL_TENANTS: u16 = u16::MAX;
/// Tenant-scope count meaning "every tenant", then a `u32` credential id.
const ALL_TENANTS_CREDENTIAL: u16 = u16::MAX - 1;
/// Flag on a tenant-scope count: a `u32` credential id follows the ids.
const CREDENTIAL_FLAG: u16 = 0x8000;
/// Most tenant ids in a write's scope.
const SCOPE_TENANTS_MAX: usize = 0x4000;

/// Which tenants a write may touch (the session's scope when it was made).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every tenant.
    AllTenants,
    /// These tenant ids, as little-endian `u32`s.
    Tenants(&'a [u8]),
}

impl Scope<'_> {
    /// The tenant ids.
    pub fn tenants(&self) -> Option<Vec<u32>> {
        match self {
            Scope::AllTenants => None,
            Scope::Tenants(bytes) => Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        }
    }
}

/// A batch of write requests and the time they were proposed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// The proposer's clock, seconds: a proposal, not the time the batch
    /// runs at (that is the applied clock, see the module comment).
    pub now_s: u32,
    /// The encoded writes (see the module comment).
    pub writes: Vec<u8>,
    /// How many writes.
    pub count: u32,
}

impl WriteBatch {
    /// An empty batch stamped `now_s`. Applied empty, it runs an expiry
    /// sweep at that time.
    pub fn new(now_s: u32) -> WriteBatch {
        WriteBatch {
            now_s,
            writes: Vec::new(),
            count: 0,
        }
    }

    /// Adds a write; false (and nothing added) if the batch would pass
    /// `BATCH_BYTES_MAX` or the scope has too many tenants.
    pub fn push(&mut self, tenants: Option<&[u32]>, frame: &[u8]) -> bool {
        self.push_from(tenants, 0, frame)
    }

    /// Adds a write made by the session of credential id `credential` (0:
    /// none known), which the traceability history keeps.
    pub fn push_from(&mut self, tenants: Option<&[u32]>, credential: u32, frame: &[u8]) -> bool {
        let scope_len = tenants.map_or(0, <[u32]>::len);
        if scope_len >= SCOPE_TENANTS_MAX
            || self.writes.len() + 6 + 4 * scope_len + frame.len() > BATCH_BYTES_MAX
        {
            return false;
        }
        match tenants {
            None if credential == 0 => self.writes.extend_from_slice(&ALL_TENANTS.to_le_bytes()),
            None => {
                self.writes
                    .extend_from_slice(&ALL_TENANTS_CREDENTIAL.to_le_bytes());
            }
            Some(list) => {
                // Below SCOPE_TENANTS_MAX: fits 14 bits.
                let mut count = u16::try_from(list.len()).unwrap_or(0);
                if credential != 0 {
                    count |= CREDENTIAL_FLAG;
                }
                self.writes.extend_from_slice(&count.to_le_bytes());
                for tenant in list {
                    self.writes.extend_from_slice(&tenant.to_le_bytes());
                }
            }
        }
        if credential != 0 {
            self.writes.extend_from_slice(&credential.to_le_bytes());
        }
        self.writes.extend_from_slice(frame);
        self.count += 1;
        true
    }

    /// Appends another batch's writes (the later clock wins); false (and
    /// nothing added) if the result would pass `BATCH_BYTES_MAX`.
    pub fn append(&mut self, other: &WriteBatch) -> bool {
        if self.writes.len() + other.writes.len() > BATCH_BYTES_MAX {
            return false;
        }
        self.writes.extend_from_slice(&other.writes);
        self.count += other.count;
        self.now_s = self.now_s.max(other.now_s);
        true
    }

    /// True if the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of encoded writes.
    pub fn bytes(&self) -> usize {
        self.writes.len()
    }

    /// The writes, in order: each is its scope and its request frame, or
    /// an error if the bytes cannot be read (a damaged payload).
    pub fn iter(&self) -> impl Iterator<Item = Result<(Scope<'_>, &[u8]), &'static str>> + '_ {
        self.writes_from()
            .map(|write| write.map(|(scope, _, frame)| (scope, frame)))
    }

    /// The writes with the credential id each was made by (0: unknown).
    pub fn writes_from(&self) -> Writes<'_> {
        Writes {
            bytes: &self.writes,
            at: 0,
        }
    }

    /// The log record payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.writes.len());
        out.extend_from_slice(&self.now_s.to_le_bytes());
        out.extend_from_slice(&self.writes);
        out
    }

    /// Reads a log record payload; `None` if it is malformed.
    pub fn decode(payload: &[u8]) -> Option<WriteBatch> {
        let now_s = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
        let mut batch = WriteBatch {
            now_s,
            writes: payload[4..].to_vec(),
            count: 0,
        };
        let mut count = 0;
        for write in batch.iter() {
            write.ok()?;
            count += 1;
        }
        batch.count = count;
        Some(batch)
    }
}

/// Iterator over a batch's writes.
pub struct Writes<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Writes<'a> {
    type Item = Result<(Scope<'a>, u32, &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let result = (|| {
            let rest = &self.bytes[self.at..];
            let count = u16::from_le_bytes(
                rest.get(..2)
                    .ok_or("short scope")?
                    .try_into()
                    .map_err(|_| "short scope")?,
            );
            let (scope, mut frame_at, credited) = match count {
                ALL_TENANTS => (Scope::AllTenants, 2, false),
                ALL_TENANTS_CREDENTIAL => (Scope::AllTenants, 2, true),
                _ => {
                    let end = 2 + 4 * usize::from(count & !CREDENTIAL_FLAG);
                    let ids = rest.get(2..end).ok_or("short scope")?;
                    (Scope::Tenants(ids), end, count & CREDENTIAL_FLAG != 0)
                }
            };
            let mut credential = 0;
            if credited {
                let word = rest.get(frame_at..frame_at + 4).ok_or("short scope")?;
                credential = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                frame_at += 4;
            }
            let head = rest.get(frame_at..frame_at + 4).ok_or("short frame")?;
            let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if length < crate::protocol::frame::HEADER_BYTES {
                return Err("frame length below the header");
            }
            let frame = rest
                .get(frame_at..frame_at + length)
                .ok_or("frame runs past the batch")?;
            Ok((scope, credential, frame, frame_at + length))
        })();
        match result {
            Ok((scope, credential, frame, used)) => {
                self.at += used;
                Some(Ok((scope, credential, frame)))
            }
            Err(reason) => {
                self.at = self.bytes.len();
                Some(Err(reason))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[0] = 14;
        f[4] = 0x10;
        f[8] = id;
        f
    }

    /// A write carries the credential that made it (for the history);
    /// writes without one keep the layout logs written before had, so
    /// those logs read as they did.
    #[test]
    fn credentials_travel_with_writes_and_old_layouts_still_read() {
        let mut batch = WriteBatch::new(7);
        assert!(batch.push(None, &frame(1)));
        assert!(batch.push_from(None, 42, &frame(2)));
        assert!(batch.push_from(Some(&[5, 6]), 2_147_483_653, &frame(3)));
        assert!(batch.push(Some(&[9]), &frame(4)));
        let again = WriteBatch::decode(&batch.encode()).expect("decodes");
        let read: Vec<(Option<Vec<u32>>, u32, u8)> = again
            .writes_from()
            .map(|w| {
                let (scope, credential, frame) = w.expect("whole");
                (scope.tenants(), credential, frame[8])
            })
            .collect();
        assert_eq!(
            read,
            vec![
                (None, 0, 1),
                (None, 42, 2),
                (Some(vec![5, 6]), 2_147_483_653, 3),
                (Some(vec![9]), 0, 4),
            ]
        );
        // The first write is exactly the old layout: 0xFFFF then the frame.
        assert_eq!(&batch.writes[..2], &[0xFF, 0xFF]);
        assert_eq!(&batch.writes[2..16], &frame(1)[..]);
    }

    #[test]
    fn round_trips_writes_and_scopes() {
        let mut batch = WriteBatch::new(1_800_000_000);
        assert!(batch.push(None, &frame(1)));
        assert!(batch.push(Some(&[7, 9]), &frame(2)));
        let decoded = WriteBatch::decode(&batch.encode()).unwrap();
        assert_eq!(decoded, batch);
        let writes: Vec<_> = decoded.iter().map(Result::unwrap).collect();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].0, Scope::AllTenants);
        assert_eq!(writes[1].0.tenants(), Some(vec![7, 9]));
        assert_eq!(writes[1].1, &frame(2)[..]);
    }

    #[test]
    fn damaged_payloads_are_refused_not_misread() {
        let mut batch = WriteBatch::new(5);
        batch.push(None, &frame(1));
        let bytes = batch.encode();
        for cut in 0..bytes.len() {
            if let Some(decoded) = WriteBatch::decode(&bytes[..cut]) {
                assert!(decoded.count < 1, "a cut at {cut} read as a whole write");
            }
        }
    }

    #[test]
    fn a_full_batch_refuses_more() {
        let mut batch = WriteBatch::new(5);
        let big = {
            let mut f = vec![0u8; 60_000];
            f[..4].copy_from_slice(&60_000u32.to_le_bytes());
            f
        };
        let mut pushed = 0;
        while batch.push(None, &big) {
            pushed += 1;
        }
        assert_eq!(pushed, BATCH_BYTES_MAX / 60_002);
        assert!(batch.bytes() <= BATCH_BYTES_MAX);
    }
}
