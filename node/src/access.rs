//! Access control of the calls clients and administrators make: the
//! client gRPC port and the HTTP port (node-to-node calls carry the
//! internal token instead, see `transport`).
//!
//! With `axoniq.axonserver.accesscontrol.enabled`, every call must carry a
//! token in `AxonIQ-Access-Token` (or the legacy `Access-Token`): the
//! applications' token (`accesscontrol.token`) allows client calls and
//! reading the REST API; the administrators' token
//! (`accesscontrol.admin-token`) allows everything. A call without a token
//! is refused with AXONIQ-1000, one with a token that does not allow it
//! with AXONIQ-1001 (both PERMISSION_DENIED on gRPC, 403 on REST). Tokens
//! are compared in constant time.

use tonic::codegen::http;

use crate::config::AccessConfig;
use crate::transport::equal_in_constant_time;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// An application's call, or reading the REST API.
    Client,
    /// Changing the cluster (any REST call that is not a read).
    Admin,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It carried no token (AXONIQ-1000).
    Missing,
    /// Its token does not allow it (AXONIQ-1001).
    NotAllowed,
}

impl Refusal {
    /// The Axon error code.
    pub fn code(self) -> ranvier_wire::ErrorCode {
        match self {
            Refusal::Missing => ranvier_wire::ErrorCode::AuthenticationTokenMissing,
            Refusal::NotAllowed => ranvier_wire::ErrorCode::AuthenticationInvalidToken,
        }
    }

    /// What the caller is told.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "no access token (AxonIQ-Access-Token) on the call",
            Refusal::NotAllowed => "the access token does not allow this call",
        }
    }
}

/// The header names a token may come in (lower case, as on the wire).
pub const TOKEN_HEADERS: [&str; 2] = ["axoniq-access-token", "access-token"];

/// The node's access rules.
#[derive(Debug, Clone, Default)]
pub struct Access {
    enabled: bool,
    token: Option<String>,
    admin_token: Option<String>,
    open_probes: bool,
}

impl Access {
    /// The rules `config` sets.
    pub fn new(config: &AccessConfig) -> Self {
        Access {
            enabled: config.enabled,
            token: config.token.clone(),
            admin_token: config.admin_token.clone(),
            open_probes: config.open_probes,
        }
    }

    /// Whether calls are checked at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `/ready` and `/metrics` answer without a token.
    pub fn open_probes(&self) -> bool {
        !self.enabled || self.open_probes
    }

    /// Whether a call carrying `presented` (the token headers' value, if
    /// any) may do what needs `rights`.
    pub fn check(&self, presented: Option<&[u8]>, rights: Rights) -> Result<(), Refusal> {
        if !self.enabled {
            return Ok(());
        }
        let Some(presented) = presented.filter(|t| !t.is_empty()) else { return Err(Refusal::Missing) };
        let matches =
            |token: &Option<String>| token.as_ref().is_some_and(|t| equal_in_constant_time(presented, t.as_bytes()));
        // Both are compared, whatever the first says, so timing tells nothing.
        let (admin, client) = (matches(&self.admin_token), matches(&self.token));
        match rights {
            _ if admin => Ok(()),
            Rights::Client if client => Ok(()),
            _ => Err(Refusal::NotAllowed),
        }
    }

    /// [`Self::check`] of the token in `headers`.
    pub fn check_headers(&self, headers: &http::HeaderMap, rights: Rights) -> Result<(), Refusal> {
        let presented = TOKEN_HEADERS.iter().find_map(|name| headers.get(*name)).map(|v| v.as_bytes());
        self.check(presented, rights)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn on() -> Access {
        Access::new(&AccessConfig {
            enabled: true,
            token: Some("app-secret".into()),
            admin_token: Some("admin-secret".into()),
            open_probes: false,
        })
    }

    #[test]
    fn tokens_allow_what_they_are_for_and_nothing_else() {
        let access = on();
        assert_eq!(access.check(None, Rights::Client), Err(Refusal::Missing));
        assert_eq!(access.check(Some(b""), Rights::Client), Err(Refusal::Missing));
        assert_eq!(access.check(Some(b"guess"), Rights::Client), Err(Refusal::NotAllowed));
        assert_eq!(access.check(Some(b"app-secret"), Rights::Client), Ok(()));
        assert_eq!(access.check(Some(b"app-secret"), Rights::Admin), Err(Refusal::NotAllowed));
        assert_eq!(access.check(Some(b"admin-secret"), Rights::Admin), Ok(()));
        assert_eq!(access.check(Some(b"admin-secret"), Rights::Client), Ok(()));
        assert!(!access.open_probes());
        assert_eq!(Access::default().check(None, Rights::Admin), Ok(()), "off: nothing is checked");
    }

    #[test]
    fn the_legacy_header_is_read_too() {
        let mut headers = http::HeaderMap::new();
        headers.insert("access-token", "app-secret".parse().unwrap());
        assert_eq!(on().check_headers(&headers, Rights::Client), Ok(()));
        headers.insert("axoniq-access-token", "wrong".parse().unwrap());
        assert_eq!(on().check_headers(&headers, Rights::Client), Err(Refusal::NotAllowed));
    }
}
