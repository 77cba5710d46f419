//! Tenants: the business users a node serves (ride-hailing, delivery,
//! e-commerce platforms), with their credentials, quotas, status and
//! blocklists. This is replicated state: every change is a control write
//! in the log (`protocol::codec::control`), applied by every member in log
//! order once every earlier entry has been (`Registry::apply`), kept with
//! each checkpoint (`state`) and carried in snapshot images.
//!
//! `Registry` is pure data and rules; `Control` is the node's handle on the
//! current registry, which lookups, HELLO and binds read.

mod registry;
mod state;

pub use registry::{token_hash, ControlOutcome, Registry, Tenant, TenantStatus};
pub use state::{Control, HISTORY_DIR, REGISTRY_NAME};
