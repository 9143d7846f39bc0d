//! The JSON bodies of the admin REST API (paths of Axon Server EE,
//! PROTOCOL.md §4.3): what `ranvierctl` and the operator send, and what a
//! node answers. Field names are Axon's (camelCase).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Role;

/// Axon's `RestResponse`: the answer to a change, with the error code in
/// the `AxonIQ-ErrorCode` header when `success` is false.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestResponse {
    /// Whether the change took effect.
    pub success: bool,
    /// What happened, for a person.
    pub message: String,
}

/// register-node (POST `/v1/cluster`, sent to the joining node): the node
/// to join through and which contexts to join.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// Internal host name of a node of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_host_name: Option<String>,
    /// Its internal port (8224 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_grpc_port: Option<u16>,
    /// The one context to join as PRIMARY (`default` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Join no context.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_contexts: bool,
}

/// A member and the role asked for it; the role is text so that a node
/// answers an unknown role with Axon's error instead of a parse failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRequest {
    /// Node name.
    pub node: String,
    /// Role name (PRIMARY when absent or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// register-context (POST `/v1/context`): creates the context, and its
/// replication group first when the group does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextRequest {
    /// The context's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Its replication group (the context's name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_group: Option<String>,
    /// Members of a new group with their roles.
    #[serde(default)]
    pub roles: Vec<RoleRequest>,
    /// Members of a new group as PRIMARY.
    #[serde(default)]
    pub nodes: Vec<String>,
}

/// register-replication-group (POST `/v1/replicationgroups`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRequest {
    /// The group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its members with their roles.
    #[serde(default)]
    pub roles: Vec<RoleRequest>,
}

/// A replication group's own settings (PATCH `/v1/replicationgroups/{group}`,
/// a Ranvier extension: Axon Server sets these per node only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSettings {
    /// Active backups that must hold a write before it is confirmed;
    /// `None` (or absent): the leader's
    /// `axoniq.axonserver.replication.min-active-backups`.
    #[serde(default)]
    pub min_active_backups: Option<u32>,
}

/// A member of a group with its role, as the cluster model holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRole {
    /// Node name.
    pub node: String,
    /// Its role.
    pub role: Role,
}

/// A node of the cluster (GET `/v1/public`, `/v1/cluster[/{name}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    /// Node name.
    pub name: String,
    /// Host name clients connect to.
    pub host_name: String,
    /// Client gRPC port.
    pub grpc_port: u16,
    /// HTTP port.
    pub http_port: u16,
    /// Host name other nodes use.
    pub internal_host_name: String,
    /// Internal gRPC port.
    pub internal_grpc_port: Option<u16>,
    /// Replication groups it is a member of.
    #[serde(default)]
    pub replication_groups: Vec<String>,
    /// Whether the answering node is connected to it.
    #[serde(default)]
    pub connected: bool,
    /// Axon's node tags (none in Ranvier yet).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A context (GET `/v1/public/context`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextListing {
    /// The context's name.
    pub context: String,
    /// The group that stores it.
    pub replication_group: String,
    /// The group's leader as the answering node knows it.
    pub leader: Option<String>,
    /// The group's members and roles.
    pub roles: Vec<MemberRole>,
    /// Axon's context metadata (none in Ranvier yet).
    #[serde(default)]
    pub meta_data: BTreeMap<String, String>,
    /// Whether a change to the context is under way.
    #[serde(default)]
    pub change_pending: bool,
}

/// A member's place in its group's Raft, as the answering node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftMembership {
    /// A voting member.
    Voter,
    /// A non-voting member that receives the log.
    Learner,
    /// Not (yet, or no longer) in the group's Raft.
    None,
}

/// One member in a group's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Node name.
    pub node: String,
    /// Its role in the cluster model.
    pub role: Role,
    /// Its place in the Raft membership; `None` where the answering node
    /// does not host the group.
    pub raft: Option<RaftMembership>,
    /// The last log index the leader knows it holds (on the leader only).
    pub match_index: Option<u64>,
    /// How far behind the leader's log it is (on the leader only).
    pub lag: Option<u64>,
    /// Milliseconds since it last acknowledged a heartbeat or entries (on
    /// the leader only): a member that stopped answering keeps its last
    /// `lag`, but this grows.
    #[serde(default)]
    pub last_ack_ms: Option<u64>,
    /// Whether it takes no entries because it is below its disk reserve
    /// (on the leader only).
    pub below_disk_reserve: Option<bool>,
}

/// A replication group's status (GET `/v1/public/replicationgroups`), as
/// the answering node sees it: most complete on the group's leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// The group's name.
    pub name: String,
    /// Its leader, when known.
    pub leader: Option<String>,
    /// Whether the answering node hosts a replica of it.
    pub hosted: bool,
    /// The Raft term.
    pub term: Option<u64>,
    /// The last index of the answering node's log.
    pub last_log_index: Option<u64>,
    /// How far the answering node has applied the log.
    pub applied_index: Option<u64>,
    /// Members and roles as the cluster model holds them.
    pub roles: Vec<MemberRole>,
    /// Each member with its Raft place and lag.
    pub members: Vec<MemberStatus>,
    /// The contexts it stores.
    pub contexts: Vec<String>,
    /// The group's own min-active-backups, when it sets one (else each
    /// leader applies its node's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_active_backups: Option<u32>,
    /// Milliseconds the answering node has gone without word from the
    /// group's leader: as a follower, since a leader's AppendEntries last
    /// succeeded here (or since the group opened here, if none has); as
    /// the leader, since a quorum last acknowledged it. `None` where it
    /// does not host the group. A figure well over the election timeout
    /// means the leader it names is stale (it is cut off, or the leader is
    /// down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_silent_ms: Option<u64>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_axons_field_names_and_leave_unset_fields_out() {
        let join = JoinRequest {
            internal_host_name: Some("n1".into()),
            internal_grpc_port: Some(8224),
            no_contexts: true,
            ..JoinRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&join).ok(),
            Some(serde_json::json!({"internalHostName": "n1", "internalGrpcPort": 8224, "noContexts": true}))
        );
        let context = ContextRequest {
            context: Some("orders".into()),
            replication_group: Some("g".into()),
            roles: vec![RoleRequest { node: "n2".into(), role: Some("SECONDARY".into()) }],
            nodes: vec!["n1".into()],
        };
        assert_eq!(
            serde_json::to_value(&context).ok(),
            Some(serde_json::json!({
                "context": "orders", "replicationGroup": "g",
                "roles": [{"node": "n2", "role": "SECONDARY"}], "nodes": ["n1"]
            }))
        );
        // Absent lists and flags read as empty.
        let parsed: Option<ContextRequest> = serde_json::from_str(r#"{"context":"c"}"#).ok();
        assert_eq!(parsed, Some(ContextRequest { context: Some("c".into()), ..ContextRequest::default() }));
    }

    #[test]
    fn group_status_reads_back_what_a_node_writes() {
        let status = GroupStatus {
            name: "default".into(),
            leader: Some("n1".into()),
            hosted: true,
            term: Some(3),
            last_log_index: Some(10),
            applied_index: Some(10),
            roles: vec![MemberRole { node: "n1".into(), role: Role::Primary }],
            members: vec![MemberStatus {
                node: "n1".into(),
                role: Role::PassiveBackup,
                raft: Some(RaftMembership::Learner),
                match_index: Some(9),
                lag: Some(1),
                last_ack_ms: Some(40),
                below_disk_reserve: Some(false),
            }],
            contexts: vec!["default".into()],
            min_active_backups: None,
            leader_silent_ms: Some(30),
        };
        let json = serde_json::to_value(&status).ok();
        let member = json.as_ref().map(|j| j["members"][0].clone());
        assert_eq!(
            member,
            Some(serde_json::json!({
                "node": "n1", "role": "PASSIVE_BACKUP", "raft": "learner", "matchIndex": 9, "lag": 1, "lastAckMs": 40,
                "belowDiskReserve": false
            }))
        );
        assert_eq!(json.as_ref().map(|j| j["leaderSilentMs"].clone()), Some(serde_json::json!(30)));
        let back: Option<GroupStatus> = json.and_then(|j| serde_json::from_value(j).ok());
        assert_eq!(back, Some(status));
    }
}

/// An application component with handlers in a context (GET
/// `/v1/components?context=C`), as the answering node knows them: its own
/// handlers and those the other nodes announced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentListing {
    /// The component's name (Axon's `component_name`).
    pub component: String,
    /// Where its handler clients are connected: `node` → client ids (a
    /// client on another node is listed by the identity that node gave).
    pub clients: BTreeMap<String, Vec<String>>,
    /// The commands it handles, with the load factor it subscribed with.
    pub commands: BTreeMap<String, i32>,
    /// The queries it handles.
    pub queries: Vec<String>,
}

/// One client's instance of an event processor (GET
/// `/v1/processors?context=C`), as the client last reported it
/// (`EventProcessorInfo` on its platform stream).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorInstance {
    /// The node the client is connected to.
    pub node: String,
    /// The client's id.
    pub client_id: String,
    /// The client's component.
    pub component: String,
    /// The processor's name.
    pub processor: String,
    /// Identifies the token store; instances with the same one share segments.
    pub token_store_identifier: String,
    /// Its mode as the client names it (`Tracking`, `Pooled Streaming`, `Subscribing`, …).
    pub mode: String,
    /// Whether it is running.
    pub running: bool,
    /// Whether it is in error.
    pub error: bool,
    /// Threads at work.
    pub active_threads: i32,
    /// Threads free to claim more segments.
    pub available_threads: i32,
    /// Whether it streams events (tracking or pooled), so has segments.
    pub streaming: bool,
    /// The segments it holds.
    pub segments: Vec<SegmentListing>,
}

/// One segment an instance holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentListing {
    /// The segment's id.
    pub segment_id: i32,
    /// It covers 1/`one_part_of` of the event stream.
    pub one_part_of: i32,
    /// Whether it reached the head of the stream.
    pub caught_up: bool,
    /// Whether it is replaying.
    pub replaying: bool,
    /// The last token it processed.
    pub token_position: i64,
    /// Its error, if any.
    pub error_state: String,
}

/// The clients a processor instruction (PATCH
/// `/v1/components/{component}/processors/{processor}/{action}`) was
/// relayed to; each acknowledged it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorInstructed {
    /// In the order they were instructed.
    pub instructed: Vec<InstructedClient>,
}

/// One client that acknowledged an instruction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstructedClient {
    /// The node it is connected to.
    pub node: String,
    /// The client's id.
    pub client_id: String,
    /// `pause`, `start`, `split`, `merge` or `release`.
    pub instruction: String,
    /// The segment the instruction names, for split, merge and release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<i32>,
}

/// An application (POST `/v1/applications` to register or change one; GET
/// `/v1/public/applications` and `/v1/applications/{name}` list them, never
/// with a token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationJson {
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// A token the user chose (at least 16 visible characters); the node
    /// makes one when a new application has none. Never listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Roles per context (`*`: every context).
    #[serde(default)]
    pub roles: Vec<ApplicationRoles>,
    /// Free key/value pairs.
    #[serde(default)]
    pub meta_data: BTreeMap<String, String>,
}

/// The roles of an application in one context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationRoles {
    /// A context, or `*` for every context.
    pub context: String,
    /// Role names: `READ_EVENTS`, `PUBLISH_EVENTS`, `DISPATCH_COMMANDS`,
    /// `SUBSCRIBE_COMMAND_HANDLER`, `DISPATCH_QUERY`,
    /// `SUBSCRIBE_QUERY_HANDLER`, `USE_CONTEXT`, `MONITOR`,
    /// `CONTEXT_ADMIN`, `ADMIN` (only for `*`).
    pub roles: Vec<String>,
}
