//! What the history stores and answers: events (one per change of a
//! binding, in log order) and lives (one binding from creation to its end,
//! folded from its events).

use crate::number::Number;

/// Longest order reference an event may carry (DESIGN.md: up to 32 bytes).
pub const ORDER_BYTES_MAX: usize = 32;

/// What happened to a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The binding was made; the event carries every field.
    Created,
    /// The binding changed (new expiry, perhaps new parties).
    Updated,
    /// A client removed the binding.
    Unbound,
    /// The binding reached its expiry; `at_s` is the expiry time.
    Expired,
}

impl EventKind {
    /// The 2-bit code stored on disk.
    pub(crate) fn code(self) -> u8 {
        match self {
            EventKind::Created => 0,
            EventKind::Updated => 1,
            EventKind::Unbound => 2,
            EventKind::Expired => 3,
        }
    }

    /// The kind for a 2-bit code (every code is a kind).
    pub(crate) fn from_code(code: u8) -> EventKind {
        match code & 3 {
            0 => EventKind::Created,
            1 => EventKind::Updated,
            2 => EventKind::Unbound,
            _ => EventKind::Expired,
        }
    }

    /// True for the two kinds that end a life.
    pub fn is_end(self) -> bool {
        matches!(self, EventKind::Unbound | EventKind::Expired)
    }

    /// True for the two kinds that carry the binding's fields.
    pub fn carries_fields(self) -> bool {
        matches!(self, EventKind::Created | EventKind::Updated)
    }
}

/// One change of one binding, as the apply path reports it.
///
/// `Created` carries every field. `Updated` carries the binding as it is
/// after the update (the new expiry; `a`/`b`/`order` when not empty replace
/// the old ones). `Unbound` and `Expired` need `binding_id`, `at_s`, and `x`
/// and `created_s` (the table record holds both when the binding is removed);
/// when `x` or `created_s` is missing the store fills them from a binding
/// created in the segments still in memory, see `History::append`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When, Unix seconds (for `Expired`: the binding's expiry time).
    pub at_s: u32,
    /// Log entry that caused it; non-decreasing along `append` calls.
    pub log_index: u64,
    /// The binding (unique, never reused).
    pub binding_id: u64,
    /// Business user owning the binding.
    pub tenant: u32,
    /// 0 AXB, 1 AXN, 2 AXE.
    pub mode: u8,
    /// The virtual number.
    pub x: Number,
    /// Party A (the owner for AXN and AXE).
    pub a: Number,
    /// Party B, the default callee (AXN) or the extension key (AXE).
    pub b: Number,
    /// The platform's order reference, at most `ORDER_BYTES_MAX` bytes.
    pub order: Vec<u8>,
    /// Absolute expiry, Unix seconds.
    pub expires_at_s: u32,
    /// Id of the credential that asked, 0 when unknown.
    pub credential: u32,
    /// When the binding was created (for `Created`: ignored, `at_s` is).
    /// 0 when unknown: see the type's docs.
    pub created_s: u32,
}

impl Event {
    /// An event of `kind` with every other field empty, for the callers
    /// (and tests) that fill in only what the kind needs.
    pub fn new(kind: EventKind, at_s: u32, log_index: u64, binding_id: u64) -> Event {
        Event {
            kind,
            at_s,
            log_index,
            binding_id,
            tenant: 0,
            mode: 0,
            x: Number::NONE,
            a: Number::NONE,
            b: Number::NONE,
            order: Vec::new(),
            expires_at_s: 0,
            credential: 0,
            created_s: 0,
        }
    }
}

/// One binding's life as the history knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Life {
    /// The binding.
    pub binding_id: u64,
    /// Business user owning it.
    pub tenant: u32,
    /// 0 AXB, 1 AXN, 2 AXE.
    pub mode: u8,
    /// The virtual number.
    pub x: Number,
    /// Party A.
    pub a: Number,
    /// Party B (default callee for AXN, extension key for AXE).
    pub b: Number,
    /// Order reference.
    pub order: Vec<u8>,
    /// Credential that created it.
    pub credential: u32,
    /// When it was created.
    pub created_s: u32,
    /// When it ended; `None`: still live as far as the history knows.
    pub ended_s: Option<u32>,
    /// How it ended (`Unbound` or `Expired`).
    pub end: Option<EventKind>,
    /// The latest expiry the history knows of.
    pub expires_at_s: u32,
}
