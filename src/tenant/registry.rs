//! The registry: tenants, their credentials (as SHA-256 hashes), quotas and
//! status, and the caller blocklists. Applying a control write is a pure
//! function of the registry and the write, so every member reaches the same
//! registry from the same log.

use crate::number::Number;
use crate::pool::{AreaCode, PoolError, PoolRange, Pools, Province};
use crate::protocol::codec::control::{ControlRequest, PutMode, TOKEN_HASH_BYTES};
use crate::protocol::status;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most credentials one tenant may hold.
pub const TOKENS_PER_TENANT_MAX: usize = 16;
/// Most tenants a node keeps.
pub const TENANTS_MAX: usize = 100_000;
/// Most callers on all blocklists together.
pub const BLOCKED_MAX: usize = 1_000_000;

/// Whether a tenant's bindings route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Its bindings route and it may bind.
    Active,
    /// Lookups of its bindings answer `tenant_suspended`, and so do its
    /// binds, until it is resumed. Nothing of its bindings is rewritten.
    Suspended,
}

/// One tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its id, as bindings and credentials carry it.
    pub id: u32,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Most live bindings (0: no quota).
    pub max_live: u32,
    /// Most binds per second, at the leader (0: no quota).
    pub binds_per_s: u32,
    /// Most lookups per second its bindings answer on a node, shared out
    /// among the event loops (0: no limit).
    #[serde(default)]
    pub lookups_per_s: u32,
    /// Most lookups per second one of its X answers on a node (0: no
    /// limit).
    #[serde(default)]
    pub x_lookups_per_s: u32,
    /// SHA-256 of each platform credential, hex: the tokens themselves are
    /// kept nowhere.
    pub token_hashes: Vec<String>,
    /// When it was added (applied clock, Unix seconds).
    pub added_s: u32,
    /// When it last changed.
    pub changed_s: u32,
}

/// What a control write did: the status to answer and, for an `ok`, a JSON
/// body describing the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlOutcome {
    /// Status code of the answer.
    pub status: u8,
    /// JSON body of an `ok` answer (empty otherwise).
    pub body: String,
}

impl ControlOutcome {
    fn refused(status: u8) -> ControlOutcome {
        ControlOutcome {
            status,
            body: String::new(),
        }
    }

    fn ok(body: String) -> ControlOutcome {
        ControlOutcome {
            status: status::OK,
            body,
        }
    }
}

/// The control state of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// Index after the last log entry this registry holds.
    pub applied_next: u64,
    /// The applied clock of the last control write (`store::clock`).
    pub clock_s: u32,
    /// Every tenant, by id.
    tenants: BTreeMap<u32, Tenant>,
    /// Callers refused on every tenant's numbers (`Number::word`).
    blocked_global: BTreeSet<u64>,
    /// Callers refused on one tenant's numbers.
    blocked: BTreeMap<u32, BTreeSet<u64>>,
    /// Every tenant's ranges of 700 numbers.
    #[serde(with = "pools_json", default)]
    pools: Pools,
    /// Credential hash to tenant (rebuilt from `tenants`).
    #[serde(skip)]
    by_token: HashMap<[u8; TOKEN_HASH_BYTES], u32>,
}

/// The pools in the registry's JSON: a list of ranges (`tenant`, `first`,
/// `last`, `area`, `province`), rebuilt through `Pools::add`, so a file
/// with overlapping or malformed ranges is refused.
mod pools_json {
    use crate::pool::{AreaCode, PoolRange, Pools, Province};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Range {
        tenant: u32,
        first: u64,
        last: u64,
        area: String,
        province: String,
    }

    pub fn serialize<S: Serializer>(pools: &Pools, serializer: S) -> Result<S::Ok, S::Error> {
        let ranges: Vec<Range> = pools
            .tenants()
            .flat_map(|tenant| {
                pools.ranges(tenant).map(move |r| Range {
                    tenant,
                    first: r.first,
                    last: r.last,
                    area: r.area.as_str().to_string(),
                    province: r.province.name().to_string(),
                })
            })
            .collect();
        ranges.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Pools, D::Error> {
        use serde::de::Error;
        let ranges = Vec::<Range>::deserialize(deserializer)?;
        let mut pools = Pools::new();
        for r in ranges {
            let area = AreaCode::parse(&r.area)
                .ok_or_else(|| D::Error::custom(format!("bad area {:?}", r.area)))?;
            let province = Province::parse(&r.province)
                .ok_or_else(|| D::Error::custom(format!("bad province {:?}", r.province)))?;
            let range = PoolRange {
                first: r.first,
                last: r.last,
                area,
                province,
            };
            pools.add(r.tenant, range).map_err(D::Error::custom)?;
        }
        Ok(pools)
    }
}

/// The SHA-256 of a token, as the registry keeps credentials.
pub fn token_hash(token: &[u8]) -> [u8; TOKEN_HASH_BYTES] {
    Sha256::digest(token).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<[u8; TOKEN_HASH_BYTES]> {
    let mut out = [0u8; TOKEN_HASH_BYTES];
    if text.len() != TOKEN_HASH_BYTES * 2 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Registry {
    /// Reads a registry from its JSON form, rebuilding the credential index.
    pub fn from_json(bytes: &[u8]) -> Result<Registry, String> {
        let mut registry: Registry =
            serde_json::from_slice(bytes).map_err(|e| format!("registry: {e}"))?;
        registry.reindex()?;
        Ok(registry)
    }

    /// The JSON form kept with checkpoints.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    fn reindex(&mut self) -> Result<(), String> {
        self.by_token.clear();
        for tenant in self.tenants.values() {
            for text in &tenant.token_hashes {
                let hash = unhex(text).ok_or("registry: a credential hash is not 64 hex digits")?;
                self.by_token.insert(hash, tenant.id);
            }
        }
        Ok(())
    }

    /// True if no tenant is registered: binds then follow the rules of
    /// protocol version 1 (any tenant id, X owned by its first binding).
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// A tenant, if registered.
    pub fn tenant(&self, id: u32) -> Option<&Tenant> {
        self.tenants.get(&id)
    }

    /// Every tenant, by id.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    /// Every tenant's pool.
    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// True if `id` is registered and suspended.
    pub fn is_suspended(&self, id: u32) -> bool {
        self.tenants
            .get(&id)
            .is_some_and(|t| t.status == TenantStatus::Suspended)
    }

    /// True if any tenant is suspended or has a lookup rate limit, or any
    /// caller is blocked: only then do lookups need to know a binding's
    /// tenant.
    pub fn screens_lookups(&self) -> bool {
        !self.blocked_global.is_empty()
            || !self.blocked.is_empty()
            || self.tenants.values().any(|t| {
                t.status == TenantStatus::Suspended || t.lookups_per_s > 0 || t.x_lookups_per_s > 0
            })
    }

    /// True if `caller` is blocked on `tenant`'s numbers (or everywhere).
    pub fn is_blocked(&self, tenant: Option<u32>, caller: Number) -> bool {
        let word = caller.word();
        self.blocked_global.contains(&word)
            || tenant
                .and_then(|t| self.blocked.get(&t))
                .is_some_and(|set| set.contains(&word))
    }

    /// The callers blocked on `tenant`'s numbers (`None`: the global list).
    pub fn blocked(&self, tenant: Option<u32>) -> Vec<Number> {
        let set = match tenant {
            None => Some(&self.blocked_global),
            Some(t) => self.blocked.get(&t),
        };
        set.map(|s| s.iter().map(|&w| Number(w.to_le_bytes())).collect())
            .unwrap_or_default()
    }

    /// The tenant a platform credential belongs to.
    pub fn tenant_of_token(&self, token: &[u8]) -> Option<u32> {
        self.by_token.get(&token_hash(token)).copied()
    }

    /// Applies a control write at `now_s` (the applied clock). A refusal
    /// changes nothing.
    pub fn apply(&mut self, request: &ControlRequest<'_>, now_s: u32) -> ControlOutcome {
        match *request {
            ControlRequest::TenantPut {
                tenant,
                mode,
                max_live,
                binds_per_s,
                lookups_per_s,
                x_lookups_per_s,
                token,
                hashed,
            } => self.put(
                tenant,
                mode,
                [max_live, binds_per_s, lookups_per_s, x_lookups_per_s],
                (token, hashed),
                now_s,
            ),
            ControlRequest::TenantStatus { tenant, suspended } => {
                let Some(entry) = self.tenants.get_mut(&tenant) else {
                    return ControlOutcome::refused(status::UNKNOWN_TENANT);
                };
                entry.status = if suspended {
                    TenantStatus::Suspended
                } else {
                    TenantStatus::Active
                };
                entry.changed_s = now_s;
                ControlOutcome::ok(self.tenant_json(tenant))
            }
            ControlRequest::PoolAdd {
                tenant,
                first,
                last,
                area,
                province,
            } => self.pool_add(tenant, (first, last), &area, province),
            ControlRequest::PoolRemove {
                tenant,
                first,
                last,
                force: _,
            } => {
                // Whether numbers are in use was asked at the leader before
                // the write was logged (the allocator's count is not
                // replicated state): here the removal always goes through.
                match self.pools.remove(tenant, first, last, true, |_, _| 0) {
                    Ok(outcome) => ControlOutcome::ok(
                        serde_json::json!({
                            "tenant": tenant,
                            "range": format!("{}-{}", outcome.range.first, outcome.range.last),
                            "area": outcome.range.area.as_str(),
                            "removed": true,
                        })
                        .to_string(),
                    ),
                    Err(_) => ControlOutcome::refused(status::NOT_FOUND),
                }
            }
            ControlRequest::Block {
                tenant,
                caller,
                add,
            } => {
                if crate::number::check_real(caller).is_err() {
                    return ControlOutcome::refused(status::BAD_NUMBER);
                }
                if let Some(t) = tenant {
                    if !self.tenants.contains_key(&t) {
                        return ControlOutcome::refused(status::UNKNOWN_TENANT);
                    }
                }
                let count: usize = self.blocked_global.len()
                    + self.blocked.values().map(BTreeSet::len).sum::<usize>();
                let set = match tenant {
                    None => &mut self.blocked_global,
                    Some(t) => self.blocked.entry(t).or_default(),
                };
                let changed = if add {
                    if count >= BLOCKED_MAX && !set.contains(&caller.word()) {
                        return ControlOutcome::refused(status::CAPACITY);
                    }
                    set.insert(caller.word())
                } else {
                    set.remove(&caller.word())
                };
                if let Some(t) = tenant {
                    if self.blocked.get(&t).is_some_and(BTreeSet::is_empty) {
                        self.blocked.remove(&t);
                    }
                }
                ControlOutcome::ok(
                    serde_json::json!({
                        "tenant": tenant,
                        "caller": caller.digits(),
                        "blocked": add,
                        "changed": changed,
                    })
                    .to_string(),
                )
            }
        }
    }

    fn pool_add(
        &mut self,
        tenant: u32,
        (first, last): (u64, u64),
        area: &[u8; crate::protocol::codec::auto::AREA_BYTES],
        province: u8,
    ) -> ControlOutcome {
        if !self.tenants.contains_key(&tenant) {
            return ControlOutcome::refused(status::UNKNOWN_TENANT);
        }
        let text = crate::protocol::codec::auto::area_text(area);
        let Some(area) = AreaCode::parse(&text) else {
            return ControlOutcome::refused(status::BAD_REQUEST);
        };
        let mut range = PoolRange::new(first, last, area);
        if province != 0 {
            match Province::from_code(province) {
                Some(p) => range.province = p,
                None => return ControlOutcome::refused(status::BAD_REQUEST),
            }
        }
        match self.pools.add(tenant, range) {
            Ok(()) => ControlOutcome::ok(
                serde_json::json!({
                    "tenant": tenant,
                    "range": format!("{first}-{last}"),
                    "area": area.as_str(),
                    "province": range.province.name(),
                    "numbers": last - first + 1,
                })
                .to_string(),
            ),
            Err(PoolError::Overlap { .. }) => ControlOutcome::refused(status::CONFLICT),
            Err(PoolError::TooManyRanges) => ControlOutcome::refused(status::CAPACITY),
            Err(_) => ControlOutcome::refused(status::BAD_REQUEST),
        }
    }

    fn put(
        &mut self,
        tenant: u32,
        mode: PutMode,
        [max_live, binds_per_s, lookups_per_s, x_lookups_per_s]: [u32; 4],
        (token, hashed): (&[u8], bool),
        now_s: u32,
    ) -> ControlOutcome {
        let exists = self.tenants.contains_key(&tenant);
        match (mode, exists) {
            (PutMode::Add, true) => return ControlOutcome::refused(status::TENANT_EXISTS),
            (PutMode::Set, false) => return ControlOutcome::refused(status::UNKNOWN_TENANT),
            (_, false) if self.tenants.len() >= TENANTS_MAX => {
                return ControlOutcome::refused(status::CAPACITY)
            }
            _ => {}
        }
        let hash = if token.is_empty() {
            None
        } else if hashed {
            let mut hash = [0u8; TOKEN_HASH_BYTES];
            hash.copy_from_slice(token);
            Some(hash)
        } else {
            Some(token_hash(token))
        };
        if let Some(hash) = hash {
            match self.by_token.get(&hash) {
                Some(&owner) if owner != tenant => {
                    // One credential, one tenant: a token already given to
                    // another tenant would let either act as the other.
                    return ControlOutcome::refused(status::CONFLICT);
                }
                _ => {}
            }
        }
        let entry = self.tenants.entry(tenant).or_insert_with(|| Tenant {
            id: tenant,
            status: TenantStatus::Active,
            max_live: 0,
            binds_per_s: 0,
            lookups_per_s: 0,
            x_lookups_per_s: 0,
            token_hashes: Vec::new(),
            added_s: now_s,
            changed_s: now_s,
        });
        entry.max_live = max_live;
        entry.binds_per_s = binds_per_s;
        entry.lookups_per_s = lookups_per_s;
        entry.x_lookups_per_s = x_lookups_per_s;
        entry.changed_s = now_s;
        if let Some(hash) = hash {
            let text = hex(&hash);
            if !entry.token_hashes.contains(&text) {
                if entry.token_hashes.len() >= TOKENS_PER_TENANT_MAX {
                    entry.token_hashes.remove(0);
                }
                entry.token_hashes.push(text);
            }
        }
        // Cannot fail: every hash above is 64 hex digits.
        let _ = self.reindex();
        ControlOutcome::ok(self.tenant_json(tenant))
    }

    /// A tenant as JSON: id, status, quotas, credentials (how many, never
    /// the hashes), times, blocked callers.
    pub fn tenant_json(&self, id: u32) -> String {
        self.tenant_value(id).to_string()
    }

    /// `tenant_json` as a value (`null` if not registered).
    pub fn tenant_value(&self, id: u32) -> serde_json::Value {
        let Some(t) = self.tenants.get(&id) else {
            return serde_json::Value::Null;
        };
        serde_json::json!({
            "tenant": t.id,
            "state": t.status,
            "max_live": t.max_live,
            "binds_per_s": t.binds_per_s,
            "lookups_per_s": t.lookups_per_s,
            "x_lookups_per_s": t.x_lookups_per_s,
            "credentials": t.token_hashes.len(),
            "added_s": t.added_s,
            "changed_s": t.changed_s,
            "blocked_callers": self.blocked.get(&id).map_or(0, BTreeSet::len),
        })
    }

    /// Every tenant as a JSON list, with the global blocklist's size.
    pub fn list_json(&self) -> String {
        let tenants: Vec<serde_json::Value> = self
            .tenants
            .keys()
            .map(|&id| self.tenant_value(id))
            .collect();
        serde_json::json!({
            "tenants": tenants,
            "blocked_callers_global": self.blocked_global.len(),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<'a>(tenant: u32, mode: PutMode, token: &'a [u8]) -> ControlRequest<'a> {
        ControlRequest::TenantPut {
            tenant,
            mode,
            max_live: 5,
            binds_per_s: 0,
            lookups_per_s: 0,
            x_lookups_per_s: 0,
            token,
            hashed: false,
        }
    }

    #[test]
    fn add_set_suspend_and_resume() {
        let mut r = Registry::default();
        assert_eq!(
            r.apply(&put(1, PutMode::Add, b"token-one-16bytes"), 10)
                .status,
            status::OK
        );
        assert_eq!(
            r.apply(&put(1, PutMode::Add, b""), 10).status,
            status::TENANT_EXISTS
        );
        assert_eq!(
            r.apply(&put(2, PutMode::Set, b""), 10).status,
            status::UNKNOWN_TENANT
        );
        assert_eq!(r.tenant_of_token(b"token-one-16bytes"), Some(1));
        assert!(!r.is_suspended(1));
        let suspend = ControlRequest::TenantStatus {
            tenant: 1,
            suspended: true,
        };
        assert_eq!(r.apply(&suspend, 11).status, status::OK);
        assert!(r.is_suspended(1) && r.screens_lookups());
        let resume = ControlRequest::TenantStatus {
            tenant: 1,
            suspended: false,
        };
        r.apply(&resume, 12);
        assert!(!r.is_suspended(1) && !r.screens_lookups());
    }

    /// A token given to one tenant cannot be given to another.
    #[test]
    fn one_credential_belongs_to_one_tenant() {
        let mut r = Registry::default();
        r.apply(&put(1, PutMode::Add, b"shared-token-123"), 1);
        assert_eq!(
            r.apply(&put(2, PutMode::Add, b"shared-token-123"), 1)
                .status,
            status::CONFLICT
        );
        assert!(r.tenant(2).is_none());
    }

    #[test]
    fn blocklists_and_the_json_round_trip() {
        let mut r = Registry::default();
        r.apply(&put(1, PutMode::Add, b"token-one-16bytes"), 1);
        let caller = Number::from_digits(b"13800138000");
        let block = |tenant, add| ControlRequest::Block {
            tenant,
            caller,
            add,
        };
        assert_eq!(
            r.apply(&block(Some(9), true), 2).status,
            status::UNKNOWN_TENANT
        );
        assert_eq!(r.apply(&block(Some(1), true), 2).status, status::OK);
        assert!(r.is_blocked(Some(1), caller));
        assert!(!r.is_blocked(Some(2), caller));
        assert!(!r.is_blocked(None, caller));
        r.apply(&block(None, true), 2);
        assert!(r.is_blocked(Some(2), caller));
        let copy = Registry::from_json(&r.to_json()).unwrap();
        assert_eq!(copy, r);
        assert_eq!(copy.tenant_of_token(b"token-one-16bytes"), Some(1));
        r.apply(&block(Some(1), false), 3);
        r.apply(&block(None, false), 3);
        assert!(!r.screens_lookups());
    }
}
