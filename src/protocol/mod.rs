//! The x700 binary protocol (docs/PROTOCOL.md): fixed-width little-endian
//! frames, numbers in the 8-byte BCD encoding. Pure encode and decode over
//! byte slices; sockets live in `server` and `client`.

pub mod codec;
pub mod frame;

pub use codec::{BindBody, QueryBody, Request, UnbindBody, UpdateBody};
pub use frame::push_frame;
pub use frame::{FrameError, Header, HEADER_BYTES};

/// The protocol version this build speaks. Version 2 adds tenants, pools,
/// automatic X selection, blocklists and traces (PROTOCOL.md part 3); a
/// session that says version 1 in HELLO gets exactly version 1's
/// behaviour and opcodes.
pub const VERSION: u16 = 2;
/// Oldest version this build speaks.
pub const VERSION_MIN: u16 = 1;

/// Default and hard limits on frame sizes (bytes, header included).
pub mod limits {
    /// Largest request frame a server accepts by default.
    pub const REQUEST_FRAME_BYTES_DEFAULT: u32 = 1024;
    /// Largest answer frame (STATS answers carry JSON).
    pub const ANSWER_FRAME_BYTES_MAX: u32 = 64 * 1024;
    /// Longest credential in HELLO.
    pub const CREDENTIAL_BYTES_MAX: usize = 64;
    /// Longest wait a WAIT_INDEX may ask for, milliseconds: a connection
    /// held longer would look dead to its client.
    pub const WAIT_INDEX_TIMEOUT_MS_MAX: u32 = 10_000;
    /// The largest request frame: a BIND (12 + 68 bytes), or a HELLO with
    /// the longest credential (12 + 4 + 64). A server's frame limit may not
    /// be lower.
    pub const REQUEST_FRAME_BYTES_MIN: u32 = 80;
    const _: () =
        assert!(REQUEST_FRAME_BYTES_MIN as usize == super::HEADER_BYTES + super::codec::BIND_BYTES);
    const _: () = assert!(
        REQUEST_FRAME_BYTES_MIN as usize
            >= super::HEADER_BYTES + super::codec::HELLO_FIXED_BYTES + CREDENTIAL_BYTES_MAX
    );
}

/// Operation codes.
pub mod opcode {
    /// Opens a TCP session: version, role, credential.
    pub const HELLO: u8 = 0x01;
    /// Liveness check; empty body both ways.
    pub const PING: u8 = 0x02;
    /// Node statistics as JSON (admin).
    pub const STATS: u8 = 0x03;
    /// Where does a call go (switch, admin).
    pub const LOOKUP: u8 = 0x10;
    /// Wait until this node has applied a log index; the frames behind it
    /// on the connection wait too (every role).
    pub const WAIT_INDEX: u8 = 0x11;
    /// Create an AXB binding.
    pub const BIND_AXB: u8 = 0x20;
    /// Create an AXN binding.
    pub const BIND_AXN: u8 = 0x21;
    /// Create an AXE binding.
    pub const BIND_AXE: u8 = 0x22;
    /// Change a binding.
    pub const UPDATE: u8 = 0x23;
    /// Remove a binding.
    pub const UNBIND: u8 = 0x24;
    /// Read a binding.
    pub const QUERY: u8 = 0x25;
    /// Create an AXB binding on an X the node chooses in an area of the
    /// tenant's pool (v2).
    pub const BIND_AXB_AUTO: u8 = 0x26;
    /// The cluster as this node sees it, as JSON (admin).
    pub const CLUSTER_STATUS: u8 = 0x30;
    /// Initialise a new cluster with its first members (admin).
    pub const CLUSTER_INIT: u8 = 0x31;
    /// Add a member: as a learner, then, once caught up, a voter (admin,
    /// at the leader).
    pub const CLUSTER_ADD_NODE: u8 = 0x32;
    /// Remove a member from the voters and the cluster (admin, at the
    /// leader).
    pub const CLUSTER_REMOVE_NODE: u8 = 0x33;
    /// This node's table checksum at its applied index, as JSON (admin).
    pub const CLUSTER_VERIFY: u8 = 0x34;
    /// Add a tenant or change its quotas and credentials (admin; v2).
    pub const TENANT_PUT: u8 = 0x40;
    /// Suspend or resume a tenant (admin; v2).
    pub const TENANT_STATUS: u8 = 0x41;
    /// One tenant or all of them, as JSON (admin; a platform for its
    /// own; v2).
    pub const TENANT_SHOW: u8 = 0x42;
    /// Add a range of 700 numbers to a tenant's pool (admin; v2).
    pub const POOL_ADD: u8 = 0x43;
    /// Remove a range from a tenant's pool (admin; v2).
    pub const POOL_REMOVE: u8 = 0x44;
    /// A tenant's pool: ranges, numbers in use and free, as JSON (admin;
    /// a platform for its own; v2).
    pub const POOL_SHOW: u8 = 0x45;
    /// Add or remove a caller on a blocklist, a tenant's or the global
    /// one (admin; v2).
    pub const BLOCK: u8 = 0x46;
    /// Which bindings routed X at a second, from the traceability history,
    /// as JSON (admin; a platform sees its own tenants' only; v2).
    pub const TRACE_X: u8 = 0x48;
    /// An order's bindings, from the traceability history, as JSON (admin;
    /// a platform for its own tenants; v2).
    pub const TRACE_ORDER: u8 = 0x49;

    /// First opcode of the range that changes the node's control state
    /// (tenants, pools, blocklists): such a write travels alone in its
    /// log entry and is applied once every earlier entry has been.
    pub const CONTROL_FIRST: u8 = 0x40;
    /// Last opcode of that range.
    pub const CONTROL_LAST: u8 = 0x4F;

    /// True for an opcode that changes control state through the log.
    pub fn is_control_write(op: u8) -> bool {
        matches!(
            op,
            TENANT_PUT | TENANT_STATUS | BLOCK | POOL_ADD | POOL_REMOVE
        )
    }

    /// The oldest protocol version that knows `op`.
    pub fn version_of(op: u8) -> u16 {
        if (CONTROL_FIRST..=CONTROL_LAST).contains(&op) || op == BIND_AXB_AUTO {
            2
        } else {
            1
        }
    }
}

/// Answer status codes. 0-15 are lookup outcomes, 16-31 operation
/// outcomes, 32 and up protocol and node conditions.
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Nothing bound for this X (and extension).
    pub const NOT_BOUND: u8 = 1;
    /// The binding has expired.
    pub const EXPIRED: u8 = 2;
    /// The binding forbids this direction.
    pub const DIRECTION_DENIED: u8 = 3;
    /// X is bound, not for this caller.
    pub const NOT_A_PARTY: u8 = 4;
    /// A number is malformed.
    pub const BAD_NUMBER: u8 = 5;
    /// The binding's tenant is suspended: lookups of its bindings and its
    /// binds are refused until it is resumed (v2).
    pub const TENANT_SUSPENDED: u8 = 6;
    /// The caller is on a blocklist (the tenant's or the global one; v2).
    pub const BLOCKED: u8 = 7;
    /// The binding's tenant, or its X, is over its lookup rate limit this
    /// second (v2).
    pub const RATE_LIMITED: u8 = 8;
    /// A live binding already holds a number of this request.
    pub const CONFLICT: u8 = 16;
    /// No live binding has this id (or it belongs to another tenant).
    pub const NOT_FOUND: u8 = 17;
    /// A field is out of range (ttl, order length, direction, ...).
    pub const BAD_REQUEST: u8 = 18;
    /// The tenant named is not one the node knows (v2: TENANT_STATUS,
    /// BLOCK, and binds once tenants are registered).
    pub const UNKNOWN_TENANT: u8 = 19;
    /// TENANT_PUT asked to add a tenant that exists (v2).
    pub const TENANT_EXISTS: u8 = 20;
    /// The tenant is at its quota of live bindings, or of binds this
    /// second (v2).
    pub const QUOTA_EXCEEDED: u8 = 21;
    /// BIND_AXB_AUTO: no X of the tenant's pool is free for the pair in the
    /// area (and the fallback the request allowed); body: the area (v2).
    pub const POOL_EXHAUSTED: u8 = 22;
    /// A bind names an X outside its tenant's pool (v2).
    pub const NOT_IN_POOL: u8 = 23;
    /// POOL_REMOVE: numbers of the range are in live bindings; force it to
    /// remove it anyway (v2).
    pub const IN_USE: u8 = 24;
    /// The frame's layout is wrong (length for its opcode, reserved bits).
    pub const BAD_FRAME: u8 = 32;
    /// The opcode is not one this server knows.
    pub const UNKNOWN_OPCODE: u8 = 33;
    /// HELLO asked for a version this server does not speak.
    pub const UNSUPPORTED_VERSION: u8 = 34;
    /// Role or credential does not allow this.
    pub const UNAUTHORISED: u8 = 35;
    /// The server is saturated; retry later.
    pub const BUSY: u8 = 36;
    /// Writes go to the leader; the body names it (PROTOCOL.md section 8).
    pub const NOT_LEADER: u8 = 37;
    /// The disk is full; lookups still work.
    pub const DISK_FULL: u8 = 38;
    /// A shard is full.
    pub const CAPACITY: u8 = 39;
    /// Something failed inside the node.
    pub const INTERNAL: u8 = 40;
    /// Writes are stopped on this node: it is stopping, or its log failed
    /// an fsync. Lookups still work; write to another node.
    pub const UNAVAILABLE: u8 = 41;
    /// A write reached the leader's log, and the node cannot tell whether
    /// it committed (its leadership ended, or no answer came within the
    /// proposal deadline). It may yet be applied: read it back (QUERY,
    /// LOOKUP) before retrying. Every other refusal of a write means
    /// nothing was done.
    pub const OUTCOME_UNKNOWN: u8 = 42;
    /// WAIT_INDEX: this node had not applied the index asked for when the
    /// wait ended; the body gives the index it had applied. Read at the
    /// leader, or wait again.
    pub const BEHIND: u8 = 43;

    /// The snake_case name of a status, as the CLI prints it.
    pub fn name(status: u8) -> &'static str {
        match status {
            OK => "ok",
            NOT_BOUND => "not_bound",
            EXPIRED => "expired",
            DIRECTION_DENIED => "direction_denied",
            NOT_A_PARTY => "not_a_party",
            BAD_NUMBER => "bad_number",
            TENANT_SUSPENDED => "tenant_suspended",
            BLOCKED => "blocked",
            RATE_LIMITED => "rate_limited",
            UNKNOWN_TENANT => "unknown_tenant",
            TENANT_EXISTS => "tenant_exists",
            QUOTA_EXCEEDED => "quota_exceeded",
            POOL_EXHAUSTED => "pool_exhausted",
            NOT_IN_POOL => "not_in_pool",
            IN_USE => "in_use",
            CONFLICT => "conflict",
            NOT_FOUND => "not_found",
            BAD_REQUEST => "bad_request",
            BAD_FRAME => "bad_frame",
            UNKNOWN_OPCODE => "unknown_opcode",
            UNSUPPORTED_VERSION => "unsupported_version",
            UNAUTHORISED => "unauthorised",
            BUSY => "busy",
            NOT_LEADER => "not_leader",
            DISK_FULL => "disk_full",
            CAPACITY => "capacity",
            INTERNAL => "internal",
            UNAVAILABLE => "unavailable",
            OUTCOME_UNKNOWN => "outcome_unknown",
            BEHIND => "behind",
            _ => "unknown_status",
        }
    }
}

/// Roles a HELLO may claim.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Carrier switches: lookups only.
    Switch,
    /// Platforms: bind, update, unbind, query for their own tenants.
    Platform,
    /// Everything, plus stats.
    Admin,
}

impl Role {
    /// Wire value.
    pub fn code(self) -> u8 {
        match self {
            Role::Switch => 1,
            Role::Platform => 2,
            Role::Admin => 3,
        }
    }

    /// From the wire value.
    pub fn from_code(code: u8) -> Option<Role> {
        match code {
            1 => Some(Role::Switch),
            2 => Some(Role::Platform),
            3 => Some(Role::Admin),
            _ => None,
        }
    }

    /// Config and CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Switch => "switch",
            Role::Platform => "platform",
            Role::Admin => "admin",
        }
    }
}
