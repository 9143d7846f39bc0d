//! Pieces the custom resources share: the condition types every status
//! carries, and references to other objects.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition types every Ranvier resource's status carries.
pub mod condition {
    /// The resource does what its spec asks (a cluster serves, a group has
    /// its members in their roles).
    pub const AVAILABLE: &str = "Available";
    /// The operator is moving the resource towards its spec.
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong that the operator cannot mend alone (an invalid
    /// spec, a refused change); its reason and message say what.
    pub const DEGRADED: &str = "Degraded";
}

/// A key of a Secret in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key in the Secret whose value is used.
    #[serde(default = "default_token_key")]
    pub key: String,
}

/// The key the internal token is kept under in a Secret.
pub fn default_token_key() -> String {
    "internal-token".to_owned()
}
