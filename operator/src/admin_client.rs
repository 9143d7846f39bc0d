//! The node's admin REST API as the operator calls it: the shapes of
//! `ranvier-wire` over plain HTTP/1.1, with the cluster's administrators'
//! token when it has access control, a timeout on every call and Axon's
//! error code read from the `AxonIQ-ErrorCode` header.

use std::time::Duration;

use ranvier_wire::Role;
use ranvier_wire::admin::{ContextRequest, GroupRequest, GroupSettings, GroupStatus, RestResponse, RoleRequest};
use ranvier_wire::http::{encode, parse_answer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest wait for one admin call (a change is answered once applied).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read (a status listing of many groups).
const ANSWER_BYTES_MAX: u64 = 8 << 20;

/// Why an admin call did not take effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The node could not be reached, or did not answer in time.
    #[error("admin API at {address} unreachable: {reason}")]
    Unreachable {
        /// `host:port`.
        address: String,
        /// What failed.
        reason: String,
    },
    /// The node refused the call (Axon error code and message).
    #[error("refused by the cluster: {code} {message}")]
    Refused {
        /// `AXONIQ-…`, or the HTTP status when the node sent no code.
        code: String,
        /// The node's message.
        message: String,
    },
    /// The answer was not the expected shape.
    #[error("unexpected answer from {address}: {reason}")]
    Malformed {
        /// `host:port`.
        address: String,
        /// What was wrong.
        reason: String,
    },
}

/// A node's admin API at `host:port`.
#[derive(Debug, Clone)]
pub struct AdminClient {
    address: String,
    token: Option<String>,
}

impl AdminClient {
    /// The admin API at `address` (`host:port` of a node's HTTP port).
    pub fn new(address: impl Into<String>) -> Self {
        AdminClient { address: address.into(), token: None }
    }

    /// The same client, its calls carrying `token` (the cluster's
    /// administrators' token, when access control is on).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Every replication group as the answering node sees it.
    pub async fn groups(&self) -> Result<Vec<GroupStatus>, AdminError> {
        let body = self.call("GET", "/v1/public/replicationgroups", None).await?;
        serde_json::from_slice(&body).map_err(|e| self.malformed(e.to_string()))
    }

    /// Creates `group` with its members.
    pub async fn create_group(&self, group: &str, members: &[(String, Role)]) -> Result<(), AdminError> {
        let roles = members
            .iter()
            .map(|(node, role)| RoleRequest { node: node.clone(), role: Some(role.to_string()) })
            .collect();
        let body = GroupRequest { name: Some(group.to_owned()), roles };
        self.change("POST", "/v1/replicationgroups", &body).await
    }

    /// Creates `context` in `group`.
    pub async fn create_context(&self, context: &str, group: &str) -> Result<(), AdminError> {
        let body = ContextRequest {
            context: Some(context.to_owned()),
            replication_group: Some(group.to_owned()),
            ..ContextRequest::default()
        };
        self.change("POST", "/v1/context", &body).await
    }

    /// Adds `node` to `group` as `role`, or changes its role in place.
    pub async fn set_role(&self, group: &str, node: &str, role: Role) -> Result<(), AdminError> {
        let path = format!("/v1/replicationgroups/{}/{}?role={role}", encode(group), encode(node));
        self.call("POST", &path, None).await.map(|_| ())
    }

    /// Sets how many active backups must hold `group`'s writes (`None`:
    /// its leader's `min-active-backups`).
    pub async fn set_min_active_backups(&self, group: &str, min_active_backups: Option<u32>) -> Result<(), AdminError> {
        let path = format!("/v1/replicationgroups/{}", encode(group));
        self.change("PATCH", &path, &GroupSettings { min_active_backups }).await
    }

    /// Removes `node` from `group` (its files go too).
    pub async fn remove(&self, group: &str, node: &str) -> Result<(), AdminError> {
        let path = format!("/v1/replicationgroups/{}/{}", encode(group), encode(node));
        self.call("DELETE", &path, None).await.map(|_| ())
    }

    async fn change(&self, method: &str, path: &str, body: &impl serde::Serialize) -> Result<(), AdminError> {
        let body = serde_json::to_vec(body).map_err(|e| self.malformed(e.to_string()))?;
        self.call(method, path, Some(body)).await.map(|_| ())
    }

    fn malformed(&self, reason: String) -> AdminError {
        AdminError::Malformed { address: self.address.clone(), reason }
    }

    fn unreachable(&self, reason: String) -> AdminError {
        AdminError::Unreachable { address: self.address.clone(), reason }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, AdminError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.exchange(method, path, body)).await {
            Ok(result) => result,
            Err(_) => Err(self.unreachable(format!("no answer within {} s", CALL_TIMEOUT.as_secs()))),
        }
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, AdminError> {
        let mut stream =
            tokio::net::TcpStream::connect(&self.address).await.map_err(|e| self.unreachable(e.to_string()))?;
        let body = body.unwrap_or_default();
        let host = self.address.rsplit_once(':').map_or(self.address.as_str(), |(h, _)| h);
        let token = self.token.as_deref().map(|token| format!("AxonIQ-Access-Token: {token}\r\n")).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\n{token}Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(|e| self.unreachable(e.to_string()))?;
        stream.write_all(&body).await.map_err(|e| self.unreachable(e.to_string()))?;
        let mut raw = Vec::new();
        stream.take(ANSWER_BYTES_MAX).read_to_end(&mut raw).await.map_err(|e| self.unreachable(e.to_string()))?;
        if raw.is_empty() {
            // A node stopping, or not yet serving, closes without a word.
            return Err(self.unreachable("the connection closed without an answer".into()));
        }
        let answer = parse_answer(&raw).ok_or_else(|| self.malformed("not an HTTP answer".into()))?;
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        let message = serde_json::from_slice::<RestResponse>(&answer.body)
            .map(|r| r.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&answer.body).into_owned());
        let code = answer.error_code.unwrap_or_else(|| format!("HTTP {}", answer.status));
        Err(AdminError::Refused { code, message })
    }
}
