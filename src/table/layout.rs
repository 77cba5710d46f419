//! Byte layouts of every table file, as `bytemuck::Pod` records with
//! compile-time size checks. docs/STORAGE.md describes the same bytes for a
//! reader with a hex dump; keep the two in step.

use bytemuck::{Pod, Zeroable};
use std::mem::size_of;

/// Every table file begins with one page of header.
pub const HEADER_BYTES: usize = 4096;
/// On-disk format version written by this build; others are refused.
pub const FORMAT_VERSION: u32 = 1;

/// The magic bytes that open a table file.
pub const FILE_MAGIC: [u8; 8] = *b"X700TBL\0";
/// The magic bytes that open each shard meta slot.
pub const META_MAGIC: [u8; 8] = *b"X700META";
/// The magic bytes that open the data directory's store file.
pub const STORE_MAGIC: [u8; 8] = *b"X700STOR";

/// What a table file holds (`FileHeader::file_kind`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum FileKind {
    /// `HotRecord`s: what a lookup reads.
    Records = 1,
    /// `ColdRecord`s: order references and bookkeeping, parallel to records.
    Cold = 2,
    /// Primary `Bucket`s of the linear-hashing index.
    Index = 3,
    /// Overflow `Bucket`s chained from full primary buckets.
    Overflow = 4,
}

impl FileKind {
    /// File name inside a shard directory.
    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::Records => "records",
            FileKind::Cold => "cold",
            FileKind::Index => "index",
            FileKind::Overflow => "overflow",
        }
    }

    /// True for the files every lookup reads (records and index), which
    /// are mapped with huge pages where the kernel gives them.
    pub fn is_lookup_path(self) -> bool {
        !matches!(self, FileKind::Cold)
    }

    /// Size of one item in the file.
    pub fn item_bytes(self) -> usize {
        match self {
            FileKind::Records => size_of::<HotRecord>(),
            FileKind::Cold => size_of::<ColdRecord>(),
            FileKind::Index | FileKind::Overflow => size_of::<Bucket>(),
        }
    }
}

/// The first 64 bytes of every table file (the rest of the header page is
/// zero). Written once when the file is created.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// `FILE_MAGIC`.
    pub magic: [u8; 8],
    /// `FORMAT_VERSION`.
    pub format_version: u32,
    /// `FileKind` as u32.
    pub file_kind: u32,
    /// `HEADER_BYTES`: items start at this offset.
    pub header_bytes: u32,
    /// Bytes per item.
    pub item_bytes: u32,
    /// Which shard the file belongs to.
    pub shard_id: u32,
    /// Shards in the data directory.
    pub shard_count: u32,
    /// Random value shared by every file of one data directory, so files of
    /// two directories are never mixed.
    pub store_nonce: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_at_s: u64,
    /// Zero.
    pub reserved: [u8; 12],
    /// CRC32C of the 60 bytes before it.
    pub checksum: u32,
}
const _: () = assert!(size_of::<FileHeader>() == 64);

/// One binding as a lookup sees it: exactly half a cache line.
///
/// Free slots have mode 0 and chain the free list through `a` (next free
/// slot + 1 in its first four bytes, little-endian; 0 ends the list).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq, Eq, Default)]
pub struct HotRecord {
    /// The virtual number.
    pub x: [u8; 8],
    /// Party A (the owner for AXN/AXE).
    pub a: [u8; 8],
    /// AXB: party B. AXN: default callee or zero. AXE: the extension key.
    pub b: [u8; 8],
    /// Absolute expiry, seconds since the Unix epoch.
    pub expires_at_s: u32,
    /// Generation (bits 0-23), mode (24-25), direction (26-27), recording
    /// (28), representative (29). See `meta` in this module.
    pub meta: u32,
}
const _: () = assert!(size_of::<HotRecord>() == 32);

/// Bit fields of `HotRecord::meta`.
pub mod meta {
    /// Bits holding the slot's generation.
    pub const GENERATION_MASK: u32 = (1 << 24) - 1;
    /// Highest generation; a slot that reaches it is retired when freed.
    pub const GENERATION_MAX: u32 = GENERATION_MASK;
    /// Mode field shift (2 bits: 0 free, 1 AXB, 2 AXN, 3 AXE).
    pub const MODE_SHIFT: u32 = 24;
    /// Direction field shift (2 bits: 0 both, 1 a2b, 2 b2a).
    pub const DIRECTION_SHIFT: u32 = 26;
    /// Calls are recorded.
    pub const RECORDING: u32 = 1 << 28;
    /// The record represents its X in the index (key (X, NONE)).
    pub const REPRESENTATIVE: u32 = 1 << 29;
    /// Mode value of a free slot.
    pub const MODE_FREE: u32 = 0;
    /// Mode value of AXB.
    pub const MODE_AXB: u32 = 1;
    /// Mode value of AXN.
    pub const MODE_AXN: u32 = 2;
    /// Mode value of AXE.
    pub const MODE_AXE: u32 = 3;
}

/// Per-binding data that no lookup reads, parallel to `HotRecord` by slot.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq, Eq)]
pub struct ColdRecord {
    /// Tenant.
    pub tenant: u32,
    /// Creation time, seconds since the Unix epoch.
    pub created_at_s: u32,
    /// Requested lifetime, seconds (part of the idempotency check).
    pub ttl_s: u32,
    /// Next binding on the same X (slot + 1; 0 ends the list). X's
    /// representative heads the list.
    pub x_next: u32,
    /// Previous binding on the same X (slot + 1; 0 for the head).
    pub x_prev: u32,
    /// Order reference length (1 to 32).
    pub order_len: u8,
    /// Zero.
    pub reserved: [u8; 11],
    /// Order reference, zero-padded.
    pub order: [u8; 32],
}
const _: () = assert!(size_of::<ColdRecord>() == 64);

/// Index bucket: one cache line of 16 entries.
///
/// Entry = tag (bits 24-31) | slot (bits 0-23). Tag 0 marks an empty entry,
/// tag 0xFF a link whose low 24 bits name the next overflow bucket. Entries
/// are packed at the front; a link, if any, is always entry 15.
#[repr(C, align(64))]
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The entries.
    pub entries: [u32; 16],
}
const _: () = assert!(size_of::<Bucket>() == 64);

/// Entry tags and slots.
pub mod entry {
    /// Entries per bucket.
    pub const PER_BUCKET: usize = 16;
    /// Tag of an empty entry.
    pub const TAG_EMPTY: u32 = 0;
    /// Tag of a link to an overflow bucket.
    pub const TAG_LINK: u32 = 0xFF;
    /// Bits for the slot or bucket number.
    pub const SLOT_MASK: u32 = (1 << 24) - 1;
    /// Most record slots per shard (slot numbers 0 to 2^24 - 2).
    pub const SLOTS_MAX: u32 = SLOT_MASK;

    /// Packs an entry.
    pub fn pack(tag: u32, slot: u32) -> u32 {
        debug_assert!(tag != TAG_EMPTY && tag <= TAG_LINK && slot <= SLOT_MASK);
        (tag << 24) | slot
    }

    /// The tag of an entry.
    pub fn tag(entry: u32) -> u32 {
        entry >> 24
    }

    /// The slot (or bucket) of an entry.
    pub fn slot(entry: u32) -> u32 {
        entry & SLOT_MASK
    }
}

/// One copy of a shard's mutable state. The meta file holds two copies, one
/// per page; writes alternate between them, so a torn write leaves the other.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq, Eq, Default)]
pub struct ShardMeta {
    /// `META_MAGIC`.
    pub magic: [u8; 8],
    /// `FORMAT_VERSION`.
    pub format_version: u32,
    /// Which shard.
    pub shard_id: u32,
    /// Shards in the data directory.
    pub shard_count: u32,
    /// 1 if the last writer closed the shard cleanly, 0 while it is open.
    pub clean: u32,
    /// Write sequence; the copy with the highest valid sequence wins.
    pub sequence: u64,
    /// Same as `FileHeader::store_nonce`.
    pub store_nonce: u64,
    /// Record slots ever handed out (high-water mark).
    pub records_used: u32,
    /// Head of the free-slot list (slot + 1; 0 = empty).
    pub free_head: u32,
    /// Live bindings.
    pub live_bindings: u32,
    /// The applied clock: the time the last applied log entry ran at,
    /// seconds since the Unix epoch (0: no entry applied yet, or a
    /// directory from before the field, where it was a zero reserved word).
    pub applied_now_s: u32,
    /// Slots retired because their generation is exhausted.
    pub retired_slots: u32,
    /// Linear hashing level: 2^level <= primary buckets < 2^(level+1).
    pub index_level: u32,
    /// Linear hashing split pointer.
    pub index_split: u32,
    /// Data entries in the index.
    pub index_entries: u32,
    /// Overflow buckets ever handed out.
    pub overflow_used: u32,
    /// Head of the free overflow-bucket list (bucket + 1; 0 = empty).
    pub overflow_free_head: u32,
    /// Overflow buckets in use.
    pub overflow_live: u32,
    /// Next slot the expiry sweep examines.
    pub reclaim_cursor: u32,
    /// Last log position applied (the log arrives in step 4; 0 until then).
    pub applied_log_index: u64,
    /// Zero.
    pub reserved: [u32; 7],
    /// CRC32C of the bytes before it.
    pub checksum: u32,
}
const _: () = assert!(size_of::<ShardMeta>() == 128);

/// The data directory's own description, in the file `store`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq, Eq)]
pub struct StoreHeader {
    /// `STORE_MAGIC`.
    pub magic: [u8; 8],
    /// `FORMAT_VERSION`.
    pub format_version: u32,
    /// Shards, fixed at creation.
    pub shard_count: u32,
    /// Random value tying the directory's files together.
    pub store_nonce: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_at_s: u64,
    /// Zero.
    pub reserved: [u8; 28],
    /// CRC32C of the bytes before it.
    pub checksum: u32,
}
const _: () = assert!(size_of::<StoreHeader>() == 64);

/// CRC32C over a Pod value's bytes, excluding its last four (the checksum
/// field itself, which every checksummed layout here ends with).
pub fn checksum_of<T: Pod>(value: &T) -> u32 {
    let bytes = bytemuck::bytes_of(value);
    crc32c::crc32c(&bytes[..bytes.len() - 4])
}
