//! Credentials: the `[[credentials]]` entries (a token, the role it grants,
//! the tenants of a platform), the role names they use, and the rule for
//! how short a token may be.

use crate::protocol::Role;
use serde::Deserialize;

/// A credential: a token, the role it grants, and for platforms the tenants.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The secret a client presents in HELLO.
    pub token: String,
    /// `switch`, `platform` or `admin`.
    pub role: String,
    /// Tenants a platform may read and change.
    #[serde(default)]
    pub tenants: Vec<u32>,
}

/// Shortest token accepted without `allow_short_tokens`: 16 bytes of a
/// random token are beyond guessing over the wire.
pub const TOKEN_BYTES_MIN: usize = 16;

/// Parses a role name.
pub fn role_of(name: &str) -> Option<Role> {
    match name {
        "switch" => Some(Role::Switch),
        "platform" => Some(Role::Platform),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::Config;

    #[test]
    fn short_tokens_need_an_explicit_allowance() {
        let mut config = Config::default();
        config.credentials.push(Credential {
            token: "short".into(),
            role: "switch".into(),
            tenants: vec![],
        });
        assert!(config.validate().unwrap_err().to_string().contains("16"));
        config.allow_short_tokens = true;
        config.validate().unwrap();
    }
}
