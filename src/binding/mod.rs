//! The binding model: modes, parties, per-binding attributes, lookup answers
//! and the typed errors of each operation. Pure data; the rules that relate
//! bindings to each other live in `table::shard`.

use crate::number::Number;

/// Longest order reference the regulator's traceability needs (bytes).
pub const ORDER_BYTES_MAX: usize = 32;
/// Longest binding lifetime accepted: ten years. Expiry times are u32 seconds
/// since the Unix epoch, valid until 2106.
pub const TTL_S_MAX: u32 = 10 * 366 * 24 * 3600;

/// A binding's unique id. Never reused within a data directory: it encodes the
/// shard, the record slot and the slot's generation, and a slot whose
/// generation is exhausted is retired. Zero is never a valid id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct BindingId(pub u64);

/// How a binding routes (DESIGN.md, "Binding modes").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// A and B bound on X: A calls X -> B, B calls X -> A.
    Axb,
    /// X belongs to A alone: anyone calling X reaches A.
    Axn,
    /// X shared; X plus an extension reaches A.
    Axe,
}

impl Mode {
    /// The lower-case name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Axb => "axb",
            Mode::Axn => "axn",
            Mode::Axe => "axe",
        }
    }
}

/// Which calls a binding lets through. For AXN and AXE, "A" is the owner the
/// binding routes to: `BToA` is "calls to A", `AToB` is "A's own calls" (AXN's
/// default callee).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Direction {
    /// Both ways.
    #[default]
    Both,
    /// Only calls placed by A.
    AToB,
    /// Only calls reaching A.
    BToA,
}

impl Direction {
    /// The CLI and JSON spelling: `both`, `a2b`, `b2a`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Both => "both",
            Direction::AToB => "a2b",
            Direction::BToA => "b2a",
        }
    }

    /// Parses the CLI spelling.
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "both" => Some(Direction::Both),
            "a2b" => Some(Direction::AToB),
            "b2a" => Some(Direction::BToA),
            _ => None,
        }
    }

    /// True if a call placed by A may pass.
    pub fn allows_a_to_b(self) -> bool {
        self != Direction::BToA
    }

    /// True if a call reaching A may pass.
    pub fn allows_b_to_a(self) -> bool {
        self != Direction::AToB
    }
}

/// The parties of a binding, by mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Parties {
    /// AXB: the two real numbers.
    Axb {
        /// Party A.
        a: Number,
        /// Party B.
        b: Number,
    },
    /// AXN: the owner and an optional callee for the owner's own calls.
    Axn {
        /// The owner.
        a: Number,
        /// Where A's own calls to X go; `None` rejects them.
        default_callee: Option<Number>,
    },
    /// AXE: the owner and the extension that selects this binding.
    Axe {
        /// The owner.
        a: Number,
        /// Extension key (see `Number::extension_key`).
        extension: Number,
    },
}

impl Parties {
    /// The binding mode.
    pub fn mode(&self) -> Mode {
        match self {
            Parties::Axb { .. } => Mode::Axb,
            Parties::Axn { .. } => Mode::Axn,
            Parties::Axe { .. } => Mode::Axe,
        }
    }

    /// Party A (the owner for AXN and AXE).
    pub fn a(&self) -> Number {
        match *self {
            Parties::Axb { a, .. } | Parties::Axn { a, .. } | Parties::Axe { a, .. } => a,
        }
    }
}

/// A platform's order reference: 1 to 32 bytes, required.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderRef {
    len: u8,
    bytes: [u8; ORDER_BYTES_MAX],
}

impl OrderRef {
    /// Validates an order reference.
    pub fn new(order: &[u8]) -> Result<OrderRef, InvalidRequest> {
        if order.is_empty() {
            return Err(InvalidRequest::OrderMissing);
        }
        if order.len() > ORDER_BYTES_MAX {
            return Err(InvalidRequest::OrderTooLong { bytes: order.len() });
        }
        let mut bytes = [0u8; ORDER_BYTES_MAX];
        bytes[..order.len()].copy_from_slice(order);
        // The length fits: checked against ORDER_BYTES_MAX (32) above.
        let len = u8::try_from(order.len()).unwrap_or(u8::MAX);
        Ok(OrderRef { len, bytes })
    }

    /// Rebuilds a reference read from disk; `None` if the length is invalid.
    pub fn from_stored(len: u8, bytes: [u8; ORDER_BYTES_MAX]) -> Option<OrderRef> {
        (len >= 1 && usize::from(len) <= ORDER_BYTES_MAX).then_some(OrderRef { len, bytes })
    }

    /// The reference's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length and padded bytes, for storage.
    pub fn stored(&self) -> (u8, [u8; ORDER_BYTES_MAX]) {
        (self.len, self.bytes)
    }
}

impl std::fmt::Debug for OrderRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Everything a bind request carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BindRequest {
    /// The virtual number.
    pub x: Number,
    /// Mode and parties.
    pub parties: Parties,
    /// The business user the binding belongs to.
    pub tenant: u32,
    /// The platform's order.
    pub order: OrderRef,
    /// Lifetime from now, seconds (1 to `TTL_S_MAX`).
    pub ttl_s: u32,
    /// Which calls pass.
    pub direction: Direction,
    /// Whether calls on this binding are recorded.
    pub recording: bool,
}

/// A stored binding, as `query` returns it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Binding {
    /// Unique id.
    pub id: BindingId,
    /// The virtual number.
    pub x: Number,
    /// Mode and parties.
    pub parties: Parties,
    /// Tenant.
    pub tenant: u32,
    /// Order reference.
    pub order: OrderRef,
    /// Lifetime requested at bind (or last update), seconds.
    pub ttl_s: u32,
    /// Absolute expiry, seconds since the Unix epoch.
    pub expires_at_s: u32,
    /// When it was created, seconds since the Unix epoch.
    pub created_at_s: u32,
    /// Which calls pass.
    pub direction: Direction,
    /// Whether calls are recorded.
    pub recording: bool,
}

/// What happened to a binding (`Change`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChangeKind {
    /// It was made.
    Created,
    /// An update changed it.
    Updated,
    /// It was removed by UNBIND.
    Unbound,
    /// Its expiry passed and the table removed it (by the sweep, or to
    /// make room for a new binding on its numbers).
    Expired,
}

/// A change to a binding, as the tables report it to the traceability
/// history: the binding as it was after the change (for a removal: as it
/// was when removed), and when (for `Expired`: the binding's expiry, not
/// the time it was reclaimed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// When, Unix seconds (the applied clock).
    pub at_s: u32,
    /// The binding.
    pub binding: Binding,
    /// The credential of the session whose write made the change (0 for
    /// an expiry, or unknown): `server::auth::Session::credential`.
    pub credential: u32,
}

/// Changes an update may make; `None` leaves a field as it is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Update {
    /// New lifetime counted from now.
    pub ttl_s: Option<u32>,
    /// New direction control.
    pub direction: Option<Direction>,
    /// New recording flag.
    pub recording: Option<bool>,
    /// New B (AXB) or default callee (AXN).
    pub b: Option<Number>,
}

/// One lookup: who is calling which X, with an optional extension.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LookupQuery {
    /// The calling number.
    pub caller: Number,
    /// The dialled virtual number.
    pub x: Number,
    /// Extension key, or `Number::NONE`.
    pub extension: Number,
}

/// Where a call goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Route {
    /// The number to connect.
    pub callee: Number,
    /// The number the callee sees (X).
    pub display: Number,
    /// Whether to record the call.
    pub recording: bool,
    /// The binding that routed it.
    pub binding_id: BindingId,
    /// Seconds the binding has left.
    pub expires_in_s: u32,
}

/// Why a call is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reject {
    /// Nothing is bound for this X (and extension).
    NotBound,
    /// The binding exists but its expiry has passed.
    Expired,
    /// The binding forbids this direction.
    DirectionDenied,
    /// X is bound, but not for this caller.
    NotAParty,
    /// The caller, X or extension is malformed.
    BadNumber,
    /// The binding's tenant is suspended.
    TenantSuspended,
    /// The caller is on a blocklist (the binding's tenant's or the global
    /// one).
    Blocked,
    /// The binding's tenant, or its X, is over its lookup rate limit.
    RateLimited,
}

impl Reject {
    /// The snake_case status name used in JSON and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NotBound => "not_bound",
            Reject::Expired => "expired",
            Reject::DirectionDenied => "direction_denied",
            Reject::NotAParty => "not_a_party",
            Reject::BadNumber => "bad_number",
            Reject::TenantSuspended => "tenant_suspended",
            Reject::Blocked => "blocked",
            Reject::RateLimited => "rate_limited",
        }
    }
}

/// A lookup's answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LookupResult {
    /// Connect the call.
    Route(Route),
    /// Refuse it.
    Reject(Reject),
}

/// A request that is malformed regardless of the table's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// A number failed to parse.
    #[error(transparent)]
    Number(#[from] crate::number::NumberError),
    /// No order reference.
    #[error("order reference is required")]
    OrderMissing,
    /// Order reference over the limit.
    #[error("order reference is {bytes} bytes; at most 32 allowed")]
    OrderTooLong {
        /// Its length.
        bytes: usize,
    },
    /// TTL out of range.
    #[error("ttl_s {0} is out of range (1 to {TTL_S_MAX})")]
    Ttl(u64),
    /// A and B are the same number.
    #[error("A and B are the same number")]
    SamePartyTwice,
    /// An update that does not apply to the binding's mode.
    #[error("{0}")]
    NotApplicable(&'static str),
}

/// Why a bind or update failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The request itself is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// A live binding already holds this number on X. The id names it when it
    /// is known (it always is for bindings made by this version).
    #[error("conflict with live binding {}", .binding_id.map_or("on the same X".to_string(), |id| id.0.to_string()))]
    Conflict {
        /// The clashing binding.
        binding_id: Option<BindingId>,
    },
    /// X belongs to another tenant: a live binding of a tenant other than
    /// the request's holds X (or the number the request would take on X).
    /// Names nothing, so a tenant learns nothing about another's bindings.
    #[error("the virtual number is in use by another tenant")]
    OtherTenant,
    /// No live binding has this id (or X and party).
    #[error("no live binding matches")]
    NotFound,
    /// The tenant registry refuses the bind (an unknown or suspended
    /// tenant, an X outside its pool): the wire status it answers.
    #[error("{}", crate::protocol::status::name(*.0))]
    Registry(u8),
    /// The shard has no free record slot left (24-bit slot space).
    #[error("shard {shard} is full: {slots} record slots in use")]
    Capacity {
        /// Which shard.
        shard: u16,
        /// Its slot count.
        slots: u32,
    },
    /// The file system has no room to grow a table file.
    #[error("disk full while growing {path}")]
    DiskFull {
        /// The file that could not grow.
        path: String,
    },
    /// Any other I/O failure.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl WriteError {
    /// The snake_case status name used in JSON and on the wire.
    pub fn status(&self) -> &'static str {
        match self {
            WriteError::Invalid(InvalidRequest::Number(_)) => "bad_number",
            WriteError::Invalid(_) => "bad_request",
            WriteError::Conflict { .. } => "conflict",
            WriteError::OtherTenant => "unauthorised",
            WriteError::NotFound => "not_found",
            WriteError::Registry(code) => crate::protocol::status::name(*code),
            WriteError::Capacity { .. } => "capacity",
            WriteError::DiskFull { .. } => "disk_full",
            WriteError::Io { .. } => "internal",
        }
    }
}
