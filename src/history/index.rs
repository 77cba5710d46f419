//! The indexes of a segment: in memory while the segment is open (hash maps
//! from key to record offsets), then written once as a sorted index file
//! `<first index, 20 digits>.hidx` when the segment is sealed. Two keys:
//! the virtual number X (`Number::word`), for every event, and the order
//! key (`order_key(tenant, order)`), for `Created` and `Updated` events.
//!
//! A sealed index is read with `pread` through fences kept in memory: the
//! first key of every group of `GROUP_ENTRIES` entries and the group's
//! CRC32C. A lookup binary-searches the fences, reads the one or few groups
//! that can hold the key (3 KiB each) and checks each group's CRC before it
//! trusts it. See the module docs of `history` for the byte layout.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::event::{Event, EventKind};
use crate::number::Number;

/// Bytes of one index entry: key u64, record offset u32.
pub const ENTRY_BYTES: usize = 12;
/// Entries per group (one fence each): 3 KiB of entries.
pub const GROUP_ENTRIES: usize = 256;
/// Bytes of one fence: first key u64, CRC32C of the group u32.
pub const FENCE_BYTES: usize = 12;
/// Index file header bytes.
pub const HEADER_BYTES: usize = 64;
/// Magic of an index file.
pub const MAGIC: [u8; 8] = *b"X700HIX\0";
/// Version of the index format.
pub const FORMAT_VERSION: u32 = 1;

/// The order key: FNV-1a 64 over the tenant (4 bytes little-endian) and the
/// order bytes. Collisions only cost a record read: every answer is checked
/// against the record's own tenant and order.
pub fn order_key(tenant: u32, order: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in tenant.to_le_bytes().iter().chain(order) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Figures of a segment, kept in its index file header once sealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Records in the segment.
    pub records: u64,
    /// Of which `Created`.
    pub lives: u64,
    /// Log index of the last record.
    pub last_index: u64,
    /// Smallest and largest `at_s` of its records.
    pub min_at_s: u32,
    /// See `min_at_s`.
    pub max_at_s: u32,
    /// Largest span of a life seen in its records: for `Created` expiry
    /// minus creation, for `Updated` the later of expiry and `at_s` minus
    /// creation, for an end `at_s` minus creation. `u32::MAX` when a record
    /// did not know its creation time.
    pub span_max_s: u32,
    /// Bytes of the data file the index covers.
    pub data_bytes: u64,
}

impl Meta {
    /// Adds one record's figures.
    pub fn add(&mut self, event: &Event, span_s: u32) {
        if self.records == 0 {
            self.min_at_s = event.at_s;
            self.max_at_s = event.at_s;
        }
        self.records += 1;
        self.lives += u64::from(event.kind == EventKind::Created);
        self.last_index = event.log_index;
        self.min_at_s = self.min_at_s.min(event.at_s);
        self.max_at_s = self.max_at_s.max(event.at_s);
        self.span_max_s = self.span_max_s.max(span_s);
    }
}

/// The span of a life one event proves (see `Meta::span_max_s`); `None`
/// when the event does not know when its binding was created.
pub fn span_s(event: &Event) -> Option<u32> {
    let created = if event.kind == EventKind::Created {
        event.at_s
    } else if event.created_s == 0 {
        return None;
    } else {
        event.created_s
    };
    let reach = match event.kind {
        EventKind::Created => event.expires_at_s,
        EventKind::Updated => event.expires_at_s.max(event.at_s),
        EventKind::Unbound | EventKind::Expired => event.at_s,
    };
    Some(reach.saturating_sub(created))
}

/// Record offsets by key, as chains through one vector: the map holds the
/// newest link of each key, each link the offset and the link before it.
/// No allocation per key (a `Vec` per key made the append path pay for a
/// million small allocations and the seal for a million frees), and a few
/// large blocks to free.
#[derive(Debug, Default)]
pub struct Chains {
    heads: HashMap<u64, u32>,
    links: Vec<(u32, u32)>,
}

/// "No link before this one".
const CHAIN_END: u32 = u32::MAX;

impl Chains {
    fn with_capacity(keys: usize, records: usize) -> Chains {
        Chains {
            heads: HashMap::with_capacity(keys),
            links: Vec::with_capacity(records),
        }
    }

    fn add(&mut self, key: u64, offset: u32) {
        // Cannot truncate: a segment holds far fewer than 2^32 records.
        let link = self.links.len() as u32;
        let before = self.heads.insert(key, link).unwrap_or(CHAIN_END);
        self.links.push((offset, before));
    }

    fn clear(&mut self) {
        self.heads.clear();
        self.links.clear();
    }

    /// Appends the offsets under `key`, oldest first.
    pub fn lookup(&self, key: u64, out: &mut Vec<u32>) {
        let start = out.len();
        let mut link = self.heads.get(&key).copied().unwrap_or(CHAIN_END);
        while link != CHAIN_END {
            let (offset, before) = self.links[link as usize];
            out.push(offset);
            link = before;
        }
        out[start..].reverse();
    }

    /// Every (key, offset), sorted.
    fn sorted(&self) -> Vec<(u64, u32)> {
        let mut entries = Vec::with_capacity(self.links.len());
        for (&key, &head) in &self.heads {
            let mut link = head;
            while link != CHAIN_END {
                let (offset, before) = self.links[link as usize];
                entries.push((key, offset));
                link = before;
            }
        }
        entries.sort_unstable();
        entries
    }

    fn memory_bytes(&self) -> usize {
        self.heads.capacity() * 13 + self.links.capacity() * 8
    }
}

/// The open segment's index. Memory: ~15 bytes per distinct key, 8 per
/// entry, 26 per binding created in the segment, sized up front.
#[derive(Debug, Default)]
pub struct MemIndex {
    /// X word -> offsets of every record for that X.
    pub x: Chains,
    /// Order key -> offsets of the `Created`/`Updated` records carrying an
    /// order.
    pub order: Chains,
    /// Binding id -> (X, creation time) of the bindings created in the
    /// segment, to fill in end events that do not carry them.
    pub created: HashMap<u64, (Number, u32)>,
}

impl MemIndex {
    /// An index sized for `records` records up front: growing a hash map
    /// of half a million keys rehashes it all at once, a pause of tens of
    /// milliseconds the append path must not take. Sized for the usual mix
    /// (at most 3 distinct X per 4 records, at most one creation in 2
    /// records: ~2.2 records per life); a segment of nothing but creations
    /// on distinct numbers grows once.
    pub fn with_capacity(records: usize) -> MemIndex {
        MemIndex {
            x: Chains::with_capacity(records / 4 * 3, records),
            order: Chains::with_capacity(records / 2, records / 2),
            created: HashMap::with_capacity(records / 2),
        }
    }

    /// Empties it, keeping its memory (already faulted in: reusing it for
    /// the next segment costs no page faults on the append path).
    pub fn clear(&mut self) {
        self.x.clear();
        self.order.clear();
        self.created.clear();
    }

    /// Bytes of memory it holds, approximately.
    pub fn memory_bytes(&self) -> usize {
        self.x.memory_bytes() + self.order.memory_bytes() + self.created.capacity() * 26
    }

    /// Indexes the record of `event` at `offset`.
    pub fn add(&mut self, offset: u32, event: &Event) {
        self.x.add(event.x.word(), offset);
        if event.kind.carries_fields() && !event.order.is_empty() {
            self.order
                .add(order_key(event.tenant, &event.order), offset);
        }
        if event.kind == EventKind::Created {
            self.created.insert(event.binding_id, (event.x, event.at_s));
        }
    }
}

/// A sealed segment's index file, read through its fences.
#[derive(Debug)]
pub struct FileIndex {
    file: File,
    x_count: usize,
    order_count: usize,
    x_fences: Vec<(u64, u32)>,
    order_fences: Vec<(u64, u32)>,
}

/// Which of the two sorted sections.
#[derive(Clone, Copy, Debug)]
pub enum Section {
    /// By X.
    X,
    /// By order key.
    Order,
}

fn fences(entries: &[(u64, u32)], bytes: &mut Vec<u8>) -> Vec<(u64, u32)> {
    entries
        .chunks(GROUP_ENTRIES)
        .map(|group| {
            let start = bytes.len();
            for &(key, offset) in group {
                bytes.extend_from_slice(&key.to_le_bytes());
                bytes.extend_from_slice(&offset.to_le_bytes());
            }
            (group[0].0, crc32c::crc32c(&bytes[start..]))
        })
        .collect()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Writes the index of a sealed segment to `path` (through a temporary file,
/// fsync'd, then renamed) and returns it opened.
pub fn write(path: &Path, mem: &MemIndex, meta: &Meta) -> std::io::Result<FileIndex> {
    let x = mem.x.sorted();
    let order = mem.order.sorted();
    let mut bytes = vec![0u8; HEADER_BYTES];
    let x_fences = fences(&x, &mut bytes);
    let order_fences = fences(&order, &mut bytes);
    let fence_start = bytes.len();
    for &(key, crc) in x_fences.iter().chain(&order_fences) {
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.extend_from_slice(&crc.to_le_bytes());
    }
    let fence_crc = crc32c::crc32c(&bytes[fence_start..]);
    let head = &mut bytes[..HEADER_BYTES];
    head[0..8].copy_from_slice(&MAGIC);
    head[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    head[12..16].copy_from_slice(&fence_crc.to_le_bytes());
    head[16..24].copy_from_slice(&meta.records.to_le_bytes());
    head[24..32].copy_from_slice(&meta.lives.to_le_bytes());
    head[32..40].copy_from_slice(&meta.last_index.to_le_bytes());
    head[40..48].copy_from_slice(&meta.data_bytes.to_le_bytes());
    head[48..52].copy_from_slice(&meta.min_at_s.to_le_bytes());
    head[52..56].copy_from_slice(&meta.max_at_s.to_le_bytes());
    head[56..60].copy_from_slice(&meta.span_max_s.to_le_bytes());
    let crc = crc32c::crc32c(&head[..60]);
    head[60..64].copy_from_slice(&crc.to_le_bytes());
    // The two counts follow the header's CRC'd part: they are implied by
    // `records` for X and checked against the file length on open.
    let counts_at = bytes.len();
    bytes.extend_from_slice(&(x.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&(order.len() as u64).to_le_bytes());
    let counts_crc = crc32c::crc32c(&bytes[counts_at..]);
    bytes.extend_from_slice(&counts_crc.to_le_bytes());
    let tmp = path.with_extension("hidx.tmp");
    {
        let mut file = crate::sys::open_or_create_private(
            std::fs::OpenOptions::new().write(true).truncate(true),
            &tmp,
        )?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(FileIndex {
        file: File::open(path)?,
        x_count: x.len(),
        order_count: order.len(),
        x_fences,
        order_fences,
    })
}

/// Opens an index file: checks the header, the counts and the fences (all
/// small), not the entries (each group is checked when a lookup reads it).
pub fn open(path: &Path) -> Result<(FileIndex, Meta), String> {
    let bytes_len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut head = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| format!("header: {e}"))?;
    if head[0..8] != MAGIC {
        return Err("bad magic: not an x700 history index".into());
    }
    if crc32c::crc32c(&head[..60]) != le32(&head, 60) {
        return Err("index header CRC mismatch".into());
    }
    if le32(&head, 8) != FORMAT_VERSION {
        return Err(format!("index format version {}", le32(&head, 8)));
    }
    let meta = Meta {
        records: le64(&head, 16),
        lives: le64(&head, 24),
        last_index: le64(&head, 32),
        data_bytes: le64(&head, 40),
        min_at_s: le32(&head, 48),
        max_at_s: le32(&head, 52),
        span_max_s: le32(&head, 56),
    };
    let mut tail = [0u8; 20];
    let tail_at = bytes_len
        .checked_sub(20)
        .ok_or("index shorter than its trailer")?;
    file.read_exact_at(&mut tail, tail_at)
        .map_err(|e| format!("trailer: {e}"))?;
    if crc32c::crc32c(&tail[..16]) != le32(&tail, 16) {
        return Err("index trailer CRC mismatch".into());
    }
    let x_count = le64(&tail, 0);
    let order_count = le64(&tail, 8);
    if x_count != meta.records || order_count > meta.records {
        return Err("index counts disagree with the header".into());
    }
    // A segment's data file is below 4 GiB and a record at least 25 bytes:
    // more entries than that is a damaged file (and would overflow below).
    if x_count > u64::from(u32::MAX) / 25 {
        return Err("index counts beyond any segment".into());
    }
    // Cannot truncate: checked just above.
    let (x_count, order_count) = (x_count as usize, order_count as usize);
    let groups = x_count.div_ceil(GROUP_ENTRIES) + order_count.div_ceil(GROUP_ENTRIES);
    let fence_at = HEADER_BYTES + (x_count + order_count) * ENTRY_BYTES;
    if fence_at as u64 + (groups * FENCE_BYTES) as u64 + 20 != bytes_len {
        return Err("index length disagrees with its counts".into());
    }
    let mut fence_bytes = vec![0u8; groups * FENCE_BYTES];
    file.read_exact_at(&mut fence_bytes, fence_at as u64)
        .map_err(|e| format!("fences: {e}"))?;
    if crc32c::crc32c(&fence_bytes) != le32(&head, 12) {
        return Err("index fences CRC mismatch".into());
    }
    let mut all: Vec<(u64, u32)> = fence_bytes
        .chunks_exact(FENCE_BYTES)
        .map(|f| (le64(f, 0), le32(f, 8)))
        .collect();
    let order_fences = all.split_off(x_count.div_ceil(GROUP_ENTRIES));
    Ok((
        FileIndex {
            file,
            x_count,
            order_count,
            x_fences: all,
            order_fences,
        },
        meta,
    ))
}

impl FileIndex {
    /// Appends to `out` the record offsets stored under `key`.
    pub fn lookup(&self, section: Section, key: u64, out: &mut Vec<u32>) -> Result<(), String> {
        let (start, count, fences) = match section {
            Section::X => (HEADER_BYTES, self.x_count, &self.x_fences),
            Section::Order => (
                HEADER_BYTES + self.x_count * ENTRY_BYTES,
                self.order_count,
                &self.order_fences,
            ),
        };
        // The key can start in the last group whose first key is below it
        // and run on through every group whose first key equals it.
        let lo = fences.partition_point(|f| f.0 < key).saturating_sub(1);
        let hi = fences.partition_point(|f| f.0 <= key);
        let mut group = vec![0u8; GROUP_ENTRIES * ENTRY_BYTES];
        for (g, fence) in fences.iter().enumerate().take(hi).skip(lo) {
            let n = (count - g * GROUP_ENTRIES).min(GROUP_ENTRIES) * ENTRY_BYTES;
            let bytes = &mut group[..n];
            let at = start + g * GROUP_ENTRIES * ENTRY_BYTES;
            self.file
                .read_exact_at(bytes, at as u64)
                .map_err(|e| format!("index group: {e}"))?;
            if crc32c::crc32c(bytes) != fence.1 {
                return Err(format!("index group {g} CRC mismatch"));
            }
            for entry in bytes.chunks_exact(ENTRY_BYTES) {
                if le64(entry, 0) == key {
                    out.push(le32(entry, 8));
                }
            }
        }
        Ok(())
    }

    /// Bytes of memory the fences take.
    pub fn fence_bytes(&self) -> usize {
        (self.x_fences.len() + self.order_fences.len()) * std::mem::size_of::<(u64, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys whose entries run across group boundaries (a key with 600
    /// entries spans three groups) are found whole in the index file, as in
    /// memory; absent keys below, between and above are found empty.
    #[test]
    fn the_file_answers_as_the_memory_index_across_groups() {
        let mut mem = MemIndex::with_capacity(4096);
        let mut offset = 64u32;
        for (key, count) in [
            (5u64, 3usize),
            (9, 600),
            (11, 1),
            (20, 255),
            (21, 257),
            (40, 900),
        ] {
            for _ in 0..count {
                mem.x.add(key * 2, offset);
                mem.order.add(key * 3, offset);
                offset += 30;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.hidx");
        let meta = Meta {
            records: mem.x.links.len() as u64,
            ..Meta::default()
        };
        let written = write(&path, &mem, &meta).unwrap();
        let (file, read_meta) = open(&path).unwrap();
        assert_eq!(read_meta, meta);
        for key in 0..100u64 {
            for (section, chains) in [(Section::X, &mem.x), (Section::Order, &mem.order)] {
                let (mut want, mut got, mut got2) = (Vec::new(), Vec::new(), Vec::new());
                chains.lookup(key, &mut want);
                file.lookup(section, key, &mut got).unwrap();
                written.lookup(section, key, &mut got2).unwrap();
                assert_eq!((&got, &got2), (&want, &want), "key {key} in {section:?}");
            }
        }
    }
}
