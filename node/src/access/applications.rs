//! Applications: named holders of one token and of roles per context,
//! kept in the replicated `_admin` model (see `cluster::model`). The model
//! never holds a token, only its Argon2id hash and its first 8 characters
//! (the prefix a presented token is looked up by, so that a wrong token
//! costs no hashing unless it shares a stored prefix). This module owns
//! the roles, what each allows, and making, hashing and verifying tokens.

use std::collections::{BTreeMap, BTreeSet};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use super::Need;

/// The context name standing for every context in a role list.
pub const EVERY_CONTEXT: &str = "*";

/// The shortest token a user may choose (generated ones are 64 characters).
pub const TOKEN_MIN_LEN: usize = 16;

/// How many characters of a token are stored in clear to find it by.
const PREFIX_LEN: usize = 8;

/// What an application may do in a context (Axon's role names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppRole {
    /// Read events and snapshots, track the event stream.
    ReadEvents,
    /// Append events and snapshots, schedule events.
    PublishEvents,
    /// Send commands.
    DispatchCommands,
    /// Handle commands.
    SubscribeCommandHandler,
    /// Send queries and subscription queries.
    DispatchQuery,
    /// Handle queries.
    SubscribeQueryHandler,
    /// Every client call in the context (the six above).
    UseContext,
    /// Read the REST API (status, components, processors).
    Monitor,
    /// Administer the context: delete it, instruct its event processors;
    /// also what `MONITOR` allows.
    ContextAdmin,
    /// Administer the cluster: everything, everywhere. Only valid for
    /// every context (`*`, or `_admin` as Axon writes it).
    Admin,
}

impl AppRole {
    /// Every role.
    pub const ALL: [AppRole; 10] = [
        AppRole::ReadEvents,
        AppRole::PublishEvents,
        AppRole::DispatchCommands,
        AppRole::SubscribeCommandHandler,
        AppRole::DispatchQuery,
        AppRole::SubscribeQueryHandler,
        AppRole::UseContext,
        AppRole::Monitor,
        AppRole::ContextAdmin,
        AppRole::Admin,
    ];

    /// The role's name as written in requests.
    pub fn name(self) -> &'static str {
        match self {
            AppRole::ReadEvents => "READ_EVENTS",
            AppRole::PublishEvents => "PUBLISH_EVENTS",
            AppRole::DispatchCommands => "DISPATCH_COMMANDS",
            AppRole::SubscribeCommandHandler => "SUBSCRIBE_COMMAND_HANDLER",
            AppRole::DispatchQuery => "DISPATCH_QUERY",
            AppRole::SubscribeQueryHandler => "SUBSCRIBE_QUERY_HANDLER",
            AppRole::UseContext => "USE_CONTEXT",
            AppRole::Monitor => "MONITOR",
            AppRole::ContextAdmin => "CONTEXT_ADMIN",
            AppRole::Admin => "ADMIN",
        }
    }

    /// The role named `text` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        AppRole::ALL.into_iter().find(|role| role.name().eq_ignore_ascii_case(text.trim()))
    }

    /// Whether the role allows some client call (event store or messaging).
    pub fn is_client(self) -> bool {
        !matches!(self, AppRole::Monitor | AppRole::ContextAdmin | AppRole::Admin)
    }
}

/// A token as the model keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The token's first characters, in clear.
    pub prefix: String,
    /// Argon2id hash in PHC string form.
    pub hash: String,
}

/// One application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Free text.
    pub description: String,
    /// Context (or `*`) → the roles there.
    pub roles: BTreeMap<String, BTreeSet<AppRole>>,
    /// Free key/value pairs.
    pub meta_data: BTreeMap<String, String>,
    /// Its token.
    pub token: StoredToken,
}

impl Application {
    /// Whether the application's roles allow `need`.
    pub fn allows(&self, need: &Need) -> bool {
        let everywhere = self.roles.get(EVERY_CONTEXT);
        if self.roles.values().any(|roles| roles.contains(&AppRole::Admin)) {
            return true;
        }
        let holds = |context: Option<&str>, wanted: &dyn Fn(AppRole) -> bool| {
            let here = context.and_then(|c| self.roles.get(c));
            [here, everywhere].into_iter().flatten().flatten().any(|role| wanted(*role))
        };
        match need {
            Need::Client { context, role: Some(role) } => {
                holds(Some(context), &|held| held == *role || held == AppRole::UseContext)
            }
            Need::Client { context, role: None } => holds(Some(context), &AppRole::is_client),
            Need::Monitor { context } => {
                holds(context.as_deref(), &|held| matches!(held, AppRole::Monitor | AppRole::ContextAdmin))
            }
            Need::ContextAdmin { context } => holds(Some(context), &|held| held == AppRole::ContextAdmin),
            Need::Admin => false,
        }
    }
}

/// Checks a role list before it is stored: at least one role, contexts
/// that are valid names or `*`, `ADMIN` only for every context.
pub fn check_roles(roles: &BTreeMap<String, BTreeSet<AppRole>>) -> Result<(), String> {
    if roles.values().all(BTreeSet::is_empty) {
        return Err("an application needs at least one role".into());
    }
    for (context, held) in roles {
        let every = context == EVERY_CONTEXT || context == "_admin";
        if !every && !ranvier_wire::valid_name(context) {
            return Err(format!("invalid context {context:?} in the roles (a context name, or * for every context)"));
        }
        if held.contains(&AppRole::Admin) && !every {
            return Err(format!("ADMIN is a cluster role: give it for every context (ADMIN@*), not for {context}"));
        }
    }
    Ok(())
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The system has no randomness to give.
    #[error("no random bytes for a token: {0}")]
    Random(String),
    /// Hashing failed.
    #[error("cannot hash the token: {0}")]
    Hash(String),
}

/// Fills `bytes` from the operating system's random source.
fn random(bytes: &mut [u8]) -> Result<(), TokenError> {
    getrandom::getrandom(bytes).map_err(|e| TokenError::Random(e.to_string()))
}

/// A new token: 32 random bytes, hex encoded.
pub fn new_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    random(&mut bytes)?;
    Ok(ranvier_wire::hex(&bytes))
}

/// Checks a token a user chose: long enough, and only visible ASCII (it
/// travels in a header).
pub fn check_given_token(token: &str) -> Result<(), String> {
    if token.len() < TOKEN_MIN_LEN {
        return Err(format!("a token needs at least {TOKEN_MIN_LEN} characters"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token may hold only visible ASCII characters (no spaces)".into());
    }
    Ok(())
}

/// The hash and prefix the model keeps of `token` (slow on purpose: tens
/// of milliseconds; call it off the async threads).
pub fn hash_token(token: &str) -> Result<StoredToken, TokenError> {
    let mut salt = [0u8; 16];
    random(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| TokenError::Hash(e.to_string()))?;
    let hash = Argon2::default().hash_password(token.as_bytes(), &salt).map_err(|e| TokenError::Hash(e.to_string()))?;
    Ok(StoredToken {
        prefix: prefix_of(token.as_bytes()).map(String::from_utf8_lossy).unwrap_or_default().into(),
        hash: hash.to_string(),
    })
}

/// The part of a presented token applications are looked up by (None for
/// a token too short to be an application's).
pub fn prefix_of(token: &[u8]) -> Option<&[u8]> {
    (token.len() >= TOKEN_MIN_LEN).then(|| &token[..PREFIX_LEN])
}

/// Whether `presented` is the token `stored` was made from (slow, as
/// [`hash_token`]).
pub fn verify(presented: &[u8], stored: &StoredToken) -> bool {
    PasswordHash::new(&stored.hash).is_ok_and(|hash| Argon2::default().verify_password(presented, &hash).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn app(roles: &[(&str, &[AppRole])]) -> Application {
        Application {
            description: String::new(),
            roles: roles.iter().map(|(c, r)| (c.to_string(), r.iter().copied().collect())).collect(),
            meta_data: BTreeMap::new(),
            token: StoredToken { prefix: String::new(), hash: String::new() },
        }
    }

    fn client(context: &str, role: Option<AppRole>) -> Need {
        Need::Client { context: context.into(), role }
    }

    #[test]
    fn roles_allow_their_calls_in_their_context_only() {
        let reader = app(&[("orders", &[AppRole::ReadEvents])]);
        assert!(reader.allows(&client("orders", Some(AppRole::ReadEvents))));
        assert!(reader.allows(&client("orders", None)), "any client role may open the platform stream");
        assert!(!reader.allows(&client("orders", Some(AppRole::PublishEvents))));
        assert!(!reader.allows(&client("billing", Some(AppRole::ReadEvents))));
        assert!(!reader.allows(&client("billing", None)));
        assert!(!reader.allows(&Need::Monitor { context: Some("orders".into()) }));
        assert!(!reader.allows(&Need::Admin));

        let user = app(&[("*", &[AppRole::UseContext])]);
        for role in AppRole::ALL.into_iter().filter(|r| r.is_client()) {
            assert!(user.allows(&client("anything", Some(role))), "{role:?}");
        }
        assert!(!user.allows(&Need::ContextAdmin { context: "anything".into() }));

        let owner = app(&[("orders", &[AppRole::ContextAdmin])]);
        assert!(owner.allows(&Need::ContextAdmin { context: "orders".into() }));
        assert!(owner.allows(&Need::Monitor { context: Some("orders".into()) }));
        assert!(!owner.allows(&Need::Monitor { context: None }), "cluster-wide reads need a role for every context");
        assert!(!owner.allows(&Need::ContextAdmin { context: "billing".into() }));
        assert!(!owner.allows(&client("orders", Some(AppRole::ReadEvents))));

        let admin = app(&[("*", &[AppRole::Admin])]);
        assert!(admin.allows(&Need::Admin));
        assert!(admin.allows(&client("orders", Some(AppRole::PublishEvents))));
    }

    #[test]
    fn role_lists_are_checked_before_they_are_stored() {
        let roles = |c: &str, r: AppRole| BTreeMap::from([(c.to_owned(), BTreeSet::from([r]))]);
        assert!(check_roles(&roles("orders", AppRole::ReadEvents)).is_ok());
        assert!(check_roles(&roles("*", AppRole::Admin)).is_ok());
        assert!(check_roles(&roles("_admin", AppRole::Admin)).is_ok());
        assert!(check_roles(&roles("orders", AppRole::Admin)).unwrap_err().contains("ADMIN@*"));
        assert!(check_roles(&roles("../x", AppRole::ReadEvents)).is_err());
        assert!(check_roles(&BTreeMap::new()).is_err());
        assert_eq!(AppRole::parse("read_events"), Some(AppRole::ReadEvents));
        assert_eq!(AppRole::parse("WRITE_ALL"), None);
    }

    #[test]
    fn a_token_verifies_against_its_hash_and_nothing_else_does() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_ne!(token, new_token().unwrap());
        let stored = hash_token(&token).unwrap();
        assert_eq!(stored.prefix.as_bytes(), prefix_of(token.as_bytes()).unwrap());
        assert!(!stored.hash.contains(&token), "the hash does not hold the token");
        assert!(verify(token.as_bytes(), &stored));
        let mut wrong = token.clone().into_bytes();
        wrong[40] ^= 1;
        assert!(!verify(&wrong, &stored));
        assert!(check_given_token("short").is_err());
        assert!(check_given_token("sixteen chars ok").is_err(), "spaces");
        assert!(check_given_token("sixteen-chars-ok").is_ok());
    }
}
