//! Access control of the calls clients and administrators make: the
//! client gRPC port and the HTTP port (node-to-node calls carry the
//! internal token instead, see `transport`).
//!
//! With `axoniq.axonserver.accesscontrol.enabled`, every call must carry a
//! token in `AxonIQ-Access-Token` (or the legacy `Access-Token`; the web
//! console's pages also in their sign-in cookie, see `api::http::console`),
//! and the
//! token must allow what the call needs ([`Need`], found by [`needs`] from
//! the gRPC method and `AxonIQ-Context`, or the REST route):
//! - the applications' static token (`accesscontrol.token`) allows every
//!   client call and reading the REST API;
//! - the administrators' static token (`accesscontrol.admin-token`) and the
//!   system token (`accesscontrol.systemtokenfile`, for `ranvierctl` on the
//!   node's machine) allow everything;
//! - an application's token allows what its roles per context allow
//!   ([`applications`]); applications live in the replicated `_admin`
//!   model, so a clustered node knows them all.
//!
//! A call without a token is refused with AXONIQ-1000, one whose token does
//! not allow it with AXONIQ-1001 (both PERMISSION_DENIED on gRPC, 403 on
//! REST, a redirect to the sign-in page on the console). [`Holder`] names
//! whose token a caller presented. Static tokens are compared in constant time. An application token
//! is verified against its Argon2 hash once (at most two verifications run
//! at a time) and then remembered by its SHA-256 digest, for as long as the
//! application keeps that token, in a cache of at most
//! [`VERIFIED_CACHE_ENTRIES`] entries.

pub mod applications;
pub mod needs;
pub mod system_token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, watch};
use tonic::codegen::http;

use crate::cluster::model::ClusterModel;
use crate::config::AccessConfig;
use crate::transport::equal_in_constant_time;
use applications::{AppRole, Application};

/// What a call needs its token to allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A client call in `context`: one needing `role`, or with `None` one
    /// any client role allows (opening the platform stream).
    Client {
        /// The context of the call.
        context: String,
        /// The role it needs.
        role: Option<AppRole>,
    },
    /// Reading the REST API, about one context or the whole cluster.
    Monitor {
        /// The context read about (`None`: the cluster).
        context: Option<String>,
    },
    /// Changing one context (deleting it, instructing its processors).
    ContextAdmin {
        /// The context.
        context: String,
    },
    /// Changing the cluster.
    Admin,
}

impl Need {
    /// Whether the applications' static token allows it.
    fn client_token_allows(&self) -> bool {
        matches!(self, Need::Client { .. } | Need::Monitor { .. })
    }
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

/// Whose token a caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Access control is off: anyone may do anything.
    Anyone,
    /// No token.
    Nobody,
    /// The administrators' static token.
    AdminToken,
    /// The nodes' own system token.
    SystemToken,
    /// The applications' static token.
    ClientToken,
    /// A registered application's token.
    Application(String),
    /// A token this node does not know.
    Unknown,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Anyone => f.write_str("access control is off: anyone who reaches this port"),
            Holder::Nobody => f.write_str("no token"),
            Holder::AdminToken => f.write_str("the administrators' token"),
            Holder::SystemToken => f.write_str("the cluster's system token"),
            Holder::ClientToken => f.write_str("the applications' shared token"),
            Holder::Application(name) => write!(f, "application {name}'s token"),
            Holder::Unknown => f.write_str("a token this cluster does not know"),
        }
    }
}

/// The header names a token may come in (lower case, as on the wire).
pub const TOKEN_HEADERS: [&str; 2] = ["axoniq-access-token", "access-token"];

/// How many verified application tokens are remembered (a full cache is
/// emptied, and tokens are verified again as they come).
pub const VERIFIED_CACHE_ENTRIES: usize = 1024;

/// Argon2 verifications that may run at once (each takes tens of
/// milliseconds of one core).
const CONCURRENT_VERIFICATIONS: usize = 2;

/// The node's access rules.
#[derive(Debug)]
pub struct Access {
    enabled: bool,
    token: Option<String>,
    admin_token: Option<String>,
    system_token: Option<String>,
    open_probes: bool,
    /// The cluster model holding the applications (none on a standalone node).
    model: Option<watch::Receiver<Arc<ClusterModel>>>,
    /// SHA-256 of a verified token → (application, its stored hash then).
    verified: Mutex<HashMap<[u8; 32], (String, String)>>,
    verifying: Semaphore,
}

impl Default for Access {
    fn default() -> Self {
        Access::new(&AccessConfig::default(), None, None)
    }
}

impl Access {
    /// The rules `config` sets, with the applications of `model` and the
    /// system token, if any.
    pub fn new(
        config: &AccessConfig,
        model: Option<watch::Receiver<Arc<ClusterModel>>>,
        system_token: Option<String>,
    ) -> Self {
        Access {
            enabled: config.enabled,
            token: config.token.clone(),
            admin_token: config.admin_token.clone(),
            system_token,
            open_probes: config.open_probes,
            model,
            verified: Mutex::new(HashMap::new()),
            verifying: Semaphore::new(CONCURRENT_VERIFICATIONS),
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
    /// any) may do what it needs.
    pub async fn check(&self, presented: Option<&[u8]>, need: &Need) -> Result<(), Refusal> {
        if !self.enabled {
            return Ok(());
        }
        let Some(presented) = presented.filter(|t| !t.is_empty()) else { return Err(Refusal::Missing) };
        let (admin, system, client) = self.statics(presented);
        if admin || system || (client && need.client_token_allows()) {
            return Ok(());
        }
        if client {
            return Err(Refusal::NotAllowed);
        }
        match self.application(presented).await {
            Some((_, application)) if application.allows(need) => Ok(()),
            _ => Err(Refusal::NotAllowed),
        }
    }

    /// Whether `presented` is the (administrators', system, applications')
    /// static token. Every one is compared, whatever the first says, so
    /// timing tells nothing.
    fn statics(&self, presented: &[u8]) -> (bool, bool, bool) {
        let matches =
            |token: &Option<String>| token.as_ref().is_some_and(|t| equal_in_constant_time(presented, t.as_bytes()));
        (matches(&self.admin_token), matches(&self.system_token), matches(&self.token))
    }

    /// Whose token `presented` is, as far as this node can tell (the
    /// console names it beside what it allows).
    pub async fn holder(&self, presented: Option<&[u8]>) -> Holder {
        if !self.enabled {
            return Holder::Anyone;
        }
        let Some(presented) = presented.filter(|t| !t.is_empty()) else { return Holder::Nobody };
        let (admin, system, client) = self.statics(presented);
        if admin {
            Holder::AdminToken
        } else if system {
            Holder::SystemToken
        } else if client {
            Holder::ClientToken
        } else {
            match self.application(presented).await {
                Some((name, _)) => Holder::Application(name),
                None => Holder::Unknown,
            }
        }
    }

    /// The token in `headers`, if any.
    pub fn presented(headers: &http::HeaderMap) -> Option<&[u8]> {
        TOKEN_HEADERS.iter().find_map(|name| headers.get(*name)).map(|v| v.as_bytes())
    }

    /// The application whose token `presented` is.
    async fn application(&self, presented: &[u8]) -> Option<(String, Application)> {
        let model = self.model.as_ref()?.borrow().clone();
        if model.applications.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let remembered = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(&digest).cloned();
        if let Some((name, hash)) = remembered
            && let Some(application) = model.applications.get(&name)
            && application.token.hash == hash
        {
            return Some((name, application.clone()));
        }
        let prefix = applications::prefix_of(presented)?;
        let candidates: Vec<(String, Application)> = model
            .applications
            .iter()
            .filter(|(_, application)| application.token.prefix.as_bytes() == prefix)
            .map(|(name, application)| (name.clone(), application.clone()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let _turn = self.verifying.acquire().await.ok()?;
        let token = presented.to_vec();
        let found = tokio::task::spawn_blocking(move || {
            candidates.into_iter().find(|(_, application)| applications::verify(&token, &application.token))
        })
        .await
        .ok()??;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE_ENTRIES {
            verified.clear();
        }
        verified.insert(digest, (found.0.clone(), found.1.token.hash.clone()));
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn config() -> AccessConfig {
        AccessConfig {
            enabled: true,
            token: Some("app-secret".into()),
            admin_token: Some("admin-secret".into()),
            open_probes: false,
            system_token_file: None,
        }
    }

    fn client(context: &str, role: AppRole) -> Need {
        Need::Client { context: context.into(), role: Some(role) }
    }

    #[tokio::test]
    async fn static_tokens_allow_what_they_are_for_and_nothing_else() {
        let access = Access::new(&config(), None, Some("system-secret".into()));
        let read = client("default", AppRole::ReadEvents);
        assert_eq!(access.check(None, &read).await, Err(Refusal::Missing));
        assert_eq!(access.check(Some(b""), &read).await, Err(Refusal::Missing));
        assert_eq!(access.check(Some(b"guess"), &read).await, Err(Refusal::NotAllowed));
        assert_eq!(access.check(Some(b"app-secret"), &read).await, Ok(()));
        assert_eq!(access.check(Some(b"app-secret"), &Need::Monitor { context: None }).await, Ok(()));
        assert_eq!(access.check(Some(b"app-secret"), &Need::Admin).await, Err(Refusal::NotAllowed));
        let delete = Need::ContextAdmin { context: "default".into() };
        assert_eq!(access.check(Some(b"app-secret"), &delete).await, Err(Refusal::NotAllowed));
        for admin in [&b"admin-secret"[..], b"system-secret"] {
            assert_eq!(access.check(Some(admin), &Need::Admin).await, Ok(()));
            assert_eq!(access.check(Some(admin), &read).await, Ok(()));
        }
        assert!(!access.open_probes());
        assert_eq!(Access::default().check(None, &Need::Admin).await, Ok(()), "off: nothing is checked");
    }

    #[tokio::test]
    async fn an_application_token_allows_its_roles_until_it_is_renewed_or_deleted() {
        let token = applications::new_token().unwrap();
        let application = Application {
            description: String::new(),
            roles: BTreeMap::from([("orders".to_owned(), BTreeSet::from([AppRole::ReadEvents]))]),
            meta_data: BTreeMap::new(),
            token: applications::hash_token(&token).unwrap(),
        };
        let mut model = ClusterModel::default();
        model.applications.insert("reporting".into(), application.clone());
        let (publish, watched) = watch::channel(Arc::new(model.clone()));
        let access = Access::new(&config(), Some(watched), None);
        let read = client("orders", AppRole::ReadEvents);
        for _ in 0..2 {
            // The second check is answered from the cache of verified tokens.
            assert_eq!(access.check(Some(token.as_bytes()), &read).await, Ok(()));
        }
        assert_eq!(
            access.check(Some(token.as_bytes()), &client("orders", AppRole::PublishEvents)).await,
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            access.check(Some(token.as_bytes()), &client("billing", AppRole::ReadEvents)).await,
            Err(Refusal::NotAllowed)
        );
        assert_eq!(access.check(Some(token.as_bytes()), &Need::Admin).await, Err(Refusal::NotAllowed));

        let renewed = applications::new_token().unwrap();
        model.applications.insert(
            "reporting".into(),
            Application { token: applications::hash_token(&renewed).unwrap(), ..application },
        );
        publish.send(Arc::new(model.clone())).unwrap();
        assert_eq!(
            access.check(Some(token.as_bytes()), &read).await,
            Err(Refusal::NotAllowed),
            "the old token is gone"
        );
        assert_eq!(access.check(Some(renewed.as_bytes()), &read).await, Ok(()));

        model.applications.clear();
        publish.send(Arc::new(model)).unwrap();
        assert_eq!(access.check(Some(renewed.as_bytes()), &read).await, Err(Refusal::NotAllowed), "deleted");
    }

    #[test]
    fn the_legacy_header_is_read_too() {
        let mut headers = http::HeaderMap::new();
        headers.insert("access-token", "app-secret".parse().unwrap());
        assert_eq!(Access::presented(&headers), Some(&b"app-secret"[..]));
        headers.insert("axoniq-access-token", "wrong".parse().unwrap());
        assert_eq!(Access::presented(&headers), Some(&b"wrong"[..]));
    }
}
