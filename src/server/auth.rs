//! Who may do what: HELLO decisions, role permissions and tenant isolation.
//! Pure functions of the configuration and the request.

use super::config::{role_of, Credential};
use crate::protocol::{opcode, Role, VERSION, VERSION_MIN};
use crate::tenant::Registry;
use std::sync::Arc;

/// Which tenants a session may read and change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every tenant (admin, or protected mode).
    AllTenants,
    /// Only these (a platform credential's list).
    Tenants(Arc<[u32]>),
}

impl Access {
    /// True if the session may touch `tenant`'s bindings.
    pub fn allows(&self, tenant: u32) -> bool {
        match self {
            Access::AllTenants => true,
            Access::Tenants(tenants) => tenants.contains(&tenant),
        }
    }
}

/// An authenticated TCP session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The role asked for and granted.
    pub role: Role,
    /// Tenant scope.
    pub access: Access,
    /// The protocol version agreed in HELLO: the lower of the client's
    /// and this build's. Opcodes of later versions are unknown to it.
    pub version: u16,
    /// Which credential opened it, as the traceability history records it:
    /// a configured credential's position plus one, a tenant's credential
    /// `TENANT_CREDENTIAL | tenant`, 0 in protected mode.
    pub credential: u32,
}

/// Bit marking a tenant's credential id (the low 31 bits: the tenant).
pub const TENANT_CREDENTIAL: u32 = 1 << 31;

/// The answer to a HELLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelloOutcome {
    /// The session starts.
    Accepted(Session),
    /// Wrong or missing credential, or a role the credential does not grant.
    Unauthorised,
    /// A version this server does not speak.
    UnsupportedVersion,
}

/// Decides a HELLO. A token is looked for among the configured
/// credentials, then among the registered tenants' (a tenant's credential
/// grants the platform role for that tenant alone, and only in version 2
/// or later, which knows tenants). With no credentials configured
/// (protected mode), a token that is not a tenant's grants any role, but
/// only to loopback clients.
pub fn hello(
    credentials: &[Credential],
    registry: &Registry,
    version: u16,
    role: u8,
    token: &[u8],
    peer_is_loopback: bool,
) -> HelloOutcome {
    if !(VERSION_MIN..=VERSION).contains(&version) {
        return HelloOutcome::UnsupportedVersion;
    }
    let Some(role) = Role::from_code(role) else {
        return HelloOutcome::Unauthorised;
    };
    let accepted = |access, credential| {
        HelloOutcome::Accepted(Session {
            role,
            access,
            version,
            credential,
        })
    };
    if let Some((position, credential)) = credentials
        .iter()
        .enumerate()
        .find(|(_, c)| constant_time_eq(c.token.as_bytes(), token))
    {
        let id = u32::try_from(position + 1).unwrap_or(u32::MAX) & !TENANT_CREDENTIAL;
        return match role_of(&credential.role) {
            Some(Role::Admin) => accepted(Access::AllTenants, id),
            Some(r) if r == role => {
                accepted(Access::Tenants(credential.tenants.clone().into()), id)
            }
            _ => HelloOutcome::Unauthorised,
        };
    }
    if !token.is_empty() && version >= 2 {
        if let Some(tenant) = registry.tenant_of_token(token) {
            return if role == Role::Platform {
                accepted(
                    Access::Tenants(Arc::from([tenant])),
                    TENANT_CREDENTIAL | (tenant & !TENANT_CREDENTIAL),
                )
            } else {
                HelloOutcome::Unauthorised
            };
        }
    }
    if credentials.is_empty() && peer_is_loopback {
        return accepted(Access::AllTenants, 0);
    }
    HelloOutcome::Unauthorised
}

/// True if `role` may send `op`.
pub fn permits(role: Role, op: u8) -> bool {
    match op {
        // A second HELLO is answered BAD_REQUEST, whatever the role.
        opcode::PING | opcode::HELLO => true,
        // Any reader may bound how stale its reads are (PROTOCOL.md 7.10).
        opcode::WAIT_INDEX => true,
        opcode::LOOKUP => matches!(role, Role::Switch | Role::Admin),
        opcode::BIND_AXB
        | opcode::BIND_AXN
        | opcode::BIND_AXE
        | opcode::UPDATE
        | opcode::UNBIND
        | opcode::QUERY
        | opcode::BIND_AXB_AUTO
        | opcode::TENANT_SHOW
        | opcode::POOL_SHOW
        | opcode::TRACE_X
        | opcode::TRACE_ORDER => {
            matches!(role, Role::Platform | Role::Admin)
        }
        _ => role == Role::Admin,
    }
}

/// Compares secrets without an early exit that would leak their prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Vec<Credential> {
        vec![
            Credential {
                token: "p".into(),
                role: "platform".into(),
                tenants: vec![1, 2],
            },
            Credential {
                token: "a".into(),
                role: "admin".into(),
                tenants: vec![],
            },
            Credential {
                token: "s".into(),
                role: "switch".into(),
                tenants: vec![],
            },
        ]
    }

    #[test]
    fn roles_and_tenants() {
        let creds = credentials();
        match hello(
            &creds,
            &Registry::default(),
            1,
            Role::Platform.code(),
            b"p",
            false,
        ) {
            HelloOutcome::Accepted(session) => {
                assert!(session.access.allows(2));
                assert!(!session.access.allows(3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            hello(
                &creds,
                &Registry::default(),
                1,
                Role::Admin.code(),
                b"p",
                false
            ),
            HelloOutcome::Unauthorised
        );
        assert_eq!(
            hello(
                &creds,
                &Registry::default(),
                1,
                Role::Switch.code(),
                b"wrong",
                true
            ),
            HelloOutcome::Unauthorised
        );
        assert!(matches!(
            hello(
                &creds,
                &Registry::default(),
                1,
                Role::Switch.code(),
                b"a",
                false
            ),
            HelloOutcome::Accepted(_)
        ));
        assert_eq!(
            hello(
                &creds,
                &Registry::default(),
                9,
                Role::Switch.code(),
                b"s",
                false
            ),
            HelloOutcome::UnsupportedVersion
        );
        assert_eq!(
            hello(&creds, &Registry::default(), 1, 7, b"s", false),
            HelloOutcome::Unauthorised
        );
    }

    #[test]
    fn protected_mode_is_loopback_only() {
        assert!(matches!(
            hello(&[], &Registry::default(), 1, Role::Admin.code(), b"", true),
            HelloOutcome::Accepted(_)
        ));
        assert_eq!(
            hello(&[], &Registry::default(), 1, Role::Admin.code(), b"", false),
            HelloOutcome::Unauthorised
        );
    }

    #[test]
    fn permissions() {
        assert!(permits(Role::Switch, opcode::LOOKUP));
        assert!(!permits(Role::Switch, opcode::BIND_AXB));
        assert!(!permits(Role::Platform, opcode::LOOKUP));
        assert!(permits(Role::Platform, opcode::QUERY));
        assert!(!permits(Role::Platform, opcode::STATS));
        assert!(permits(Role::Admin, opcode::STATS));
    }
}
