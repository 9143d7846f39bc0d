//! The cluster model replicated by the `_admin` replication group: the
//! registered nodes, the replication groups with their members and roles,
//! the contexts each group carries, and the applications that may call it
//! (`access::applications`: roles, and tokens only as hashes). Every node
//! holds a replica and acts
//! on it (opens the groups and stores it is a member of, and — where it
//! leads a group — makes the group's Raft membership match the roles).
//!
//! [`ClusterModel::apply`] is pure and deterministic: every replica accepts
//! or refuses the same [`AdminCommand`]s with the same answer, so the model
//! is the same everywhere after the same log.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::roles::Role;
use crate::access::applications::{AppRole, Application, StoredToken, check_roles};

/// The admin context and replication group; always present, never deleted.
pub const ADMIN: &str = "_admin";

/// A node of the cluster and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique node name.
    pub name: String,
    /// `host:port` of its internal gRPC endpoint.
    pub internal_addr: String,
    /// Host clients are told to connect to.
    pub host_name: String,
    /// Client gRPC port.
    pub grpc_port: u16,
    /// HTTP port.
    pub http_port: u16,
}

/// One replication group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Member name → role.
    pub members: BTreeMap<String, Role>,
    /// The primaries the group was created with: they initialise its Raft.
    pub initial: BTreeSet<String>,
    /// Active backups that must hold a write before it is confirmed, when
    /// the group sets its own (else the leader's
    /// `axoniq.axonserver.replication.min-active-backups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_active_backups: Option<u32>,
}

/// One context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextInfo {
    /// The replication group that stores it.
    pub group: String,
}

/// A node that left a group and whether it keeps its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departure {
    /// Keep the event store and log files (to rejoin without copying).
    pub preserve: bool,
}

/// What the `_admin` group knows of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterModel {
    /// Registered nodes by name.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Replication groups by name (including `_admin`).
    pub groups: BTreeMap<String, GroupInfo>,
    /// Contexts by name.
    pub contexts: BTreeMap<String, ContextInfo>,
    /// Group → node → departure, for nodes removed from a group (or whose
    /// group was deleted) that have to close, and maybe delete, its files.
    pub departed: BTreeMap<String, BTreeMap<String, Departure>>,
    /// Deleted contexts whose stores the members still have to close.
    pub deleted_contexts: BTreeMap<String, Departure>,
    /// Applications by name (absent from models written before they existed).
    #[serde(default)]
    pub applications: BTreeMap<String, Application>,
}

/// A change to the cluster model, proposed through the `_admin` group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminCommand {
    /// Founds the cluster (once): registers the first node and creates one
    /// replication group per context, each with the node as PRIMARY.
    InitCluster {
        /// The founding node.
        node: NodeInfo,
        /// Contexts to create (each in a group of the same name).
        contexts: Vec<String>,
    },
    /// Registers a node and makes it a PRIMARY of the groups of `contexts`
    /// (all of them exist, or nothing changes).
    JoinCluster {
        /// The joining node.
        node: NodeInfo,
        /// Contexts it stores.
        contexts: Vec<String>,
    },
    /// Adds a node, or updates its addresses (a restart with new ports).
    RegisterNode(NodeInfo),
    /// Creates a replication group with its members.
    CreateGroup {
        /// Group name.
        name: String,
        /// Member → role.
        members: BTreeMap<String, Role>,
    },
    /// Adds a member, or changes the role of one in place.
    SetMember {
        /// Group name.
        group: String,
        /// Node name.
        node: String,
        /// Its role.
        role: Role,
    },
    /// Removes a member from a group.
    RemoveMember {
        /// Group name.
        group: String,
        /// Node name.
        node: String,
        /// Whether the node keeps its files.
        preserve: bool,
    },
    /// Sets how many active backups must hold a group's writes before they
    /// are confirmed (`None`: the leader's own setting).
    SetMinActiveBackups {
        /// Group name.
        group: String,
        /// The group's own figure, if any.
        min_active_backups: Option<u32>,
    },
    /// Deletes a group that carries no context.
    DeleteGroup {
        /// Group name.
        name: String,
        /// Whether the members keep their files.
        preserve: bool,
    },
    /// Creates a context in an existing group.
    CreateContext {
        /// Context name.
        name: String,
        /// Its replication group.
        group: String,
    },
    /// Deletes a context (its group stays).
    DeleteContext {
        /// Context name.
        name: String,
        /// Whether the members keep the context's files.
        preserve: bool,
    },
    /// Registers an application, or changes an existing one's description,
    /// roles and meta data (and its token, when one is given).
    SetApplication {
        /// Application name.
        name: String,
        /// Free text.
        description: String,
        /// Context (or `*`) → roles.
        roles: BTreeMap<String, BTreeSet<AppRole>>,
        /// Free key/value pairs.
        meta_data: BTreeMap<String, String>,
        /// Its new token; required for a new application.
        token: Option<StoredToken>,
    },
    /// Gives an application a new token (the old one stops working).
    RenewApplicationToken {
        /// Application name.
        name: String,
        /// The new token.
        token: StoredToken,
    },
    /// Deletes an application (its token stops working).
    DeleteApplication {
        /// Application name.
        name: String,
    },
}

impl fmt::Display for AdminCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminCommand::InitCluster { node, .. } => write!(f, "initialise the cluster on {}", node.name),
            AdminCommand::JoinCluster { node, .. } => write!(f, "join {} to the cluster", node.name),
            AdminCommand::RegisterNode(node) => write!(f, "register node {}", node.name),
            AdminCommand::CreateGroup { name, .. } => write!(f, "create replication group {name}"),
            AdminCommand::SetMember { group, node, role } => write!(f, "set {node} as {role} in {group}"),
            AdminCommand::RemoveMember { group, node, .. } => write!(f, "remove {node} from {group}"),
            AdminCommand::SetMinActiveBackups { group, min_active_backups: Some(n) } => {
                write!(f, "require {n} active backup(s) in {group}")
            }
            AdminCommand::SetMinActiveBackups { group, min_active_backups: None } => {
                write!(f, "let {group} follow its leader's min-active-backups")
            }
            AdminCommand::DeleteGroup { name, .. } => write!(f, "delete replication group {name}"),
            AdminCommand::CreateContext { name, group } => write!(f, "create context {name} in {group}"),
            AdminCommand::DeleteContext { name, .. } => write!(f, "delete context {name}"),
            AdminCommand::SetApplication { name, .. } => write!(f, "register application {name}"),
            AdminCommand::RenewApplicationToken { name, .. } => write!(f, "renew the token of application {name}"),
            AdminCommand::DeleteApplication { name } => write!(f, "delete application {name}"),
        }
    }
}

/// Why a command was refused: an Axon error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `AXONIQ-xxxx`.
    pub code: &'static str,
    /// For the operator.
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

fn no_application(name: &str) -> Refusal {
    refuse("AXONIQ-1300", format!("application {name} not found"))
}

/// Axon's rule for context and group names: `[a-zA-Z][a-zA-Z@_\-0-9]*`
/// (names starting with `_` are internal and cannot be created).
pub fn check_name(name: &str, what: &str) -> Result<(), Refusal> {
    if ranvier_wire::valid_name(name) {
        Ok(())
    } else {
        Err(refuse(
            "AXONIQ-2308",
            format!("invalid {what} name {name:?}: expected a letter, then letters, digits, '@', '_' or '-'"),
        ))
    }
}

impl ClusterModel {
    /// True once `_admin` holds a cluster (init-cluster or autocluster ran).
    pub fn initialized(&self) -> bool {
        self.groups.contains_key(ADMIN)
    }

    /// The group storing `context`.
    pub fn group_of(&self, context: &str) -> Option<&str> {
        self.contexts.get(context).map(|c| c.group.as_str())
    }

    /// The contexts a group carries, by name.
    pub fn contexts_of(&self, group: &str) -> Vec<String> {
        self.contexts.iter().filter(|(_, c)| c.group == group).map(|(name, _)| name.clone()).collect()
    }

    /// `node`'s role in `group`, if a member.
    pub fn role(&self, group: &str, node: &str) -> Option<Role> {
        self.groups.get(group).and_then(|g| g.members.get(node)).copied()
    }

    /// The registered members of `group` whose role is `wanted`, by name.
    pub fn member_nodes(&self, group: &str, wanted: impl Fn(Role) -> bool) -> Vec<&NodeInfo> {
        let Some(info) = self.groups.get(group) else { return Vec::new() };
        info.members.iter().filter(|(_, role)| wanted(**role)).filter_map(|(name, _)| self.nodes.get(name)).collect()
    }

    /// The members a node that stores no replica of `group` hands its
    /// calls to: the group's PRIMARY members other than `me` (which may be
    /// a primary that has not opened the group yet and must not hand a
    /// call back to itself). The context proxy and the relay of writes
    /// both route by this.
    pub fn primaries_except(&self, group: &str, me: &str) -> Vec<&NodeInfo> {
        let mut members = self.member_nodes(group, |role| role == Role::Primary);
        members.retain(|node| node.name != me);
        members
    }

    /// Applies a command, or refuses it leaving the model unchanged.
    pub fn apply(&mut self, command: &AdminCommand) -> Result<(), Refusal> {
        // Composite commands work on a copy, so they change all or nothing.
        match command {
            AdminCommand::InitCluster { node, contexts } => {
                if self.initialized() {
                    return Err(refuse("AXONIQ-2306", "the cluster is already initialised"));
                }
                let mut next = self.clone();
                next.apply(&AdminCommand::RegisterNode(node.clone()))?;
                for context in contexts {
                    let members = BTreeMap::from([(node.name.clone(), Role::Primary)]);
                    next.apply(&AdminCommand::CreateGroup { name: context.clone(), members })?;
                    next.apply(&AdminCommand::CreateContext { name: context.clone(), group: context.clone() })?;
                }
                *self = next;
                Ok(())
            }
            AdminCommand::JoinCluster { node, contexts } => {
                if !self.initialized() {
                    return Err(refuse("AXONIQ-2307", "the cluster is not initialised yet"));
                }
                let mut next = self.clone();
                next.apply(&AdminCommand::RegisterNode(node.clone()))?;
                for context in contexts {
                    let group = next
                        .group_of(context)
                        .ok_or_else(|| refuse("AXONIQ-1302", format!("context {context} not found")))?
                        .to_owned();
                    if next.role(&group, &node.name).is_none() {
                        let set = AdminCommand::SetMember { group, node: node.name.clone(), role: Role::Primary };
                        next.apply(&set)?;
                    }
                }
                *self = next;
                Ok(())
            }
            other => self.apply_one(other),
        }
    }

    fn apply_one(&mut self, command: &AdminCommand) -> Result<(), Refusal> {
        match command {
            AdminCommand::InitCluster { .. } | AdminCommand::JoinCluster { .. } => self.apply(command),
            AdminCommand::RegisterNode(node) => {
                if node.name.is_empty() || node.internal_addr.is_empty() {
                    return Err(refuse("AXONIQ-2308", "a node needs a name and an internal address"));
                }
                if let Some((other, _)) =
                    self.nodes.iter().find(|(name, n)| n.internal_addr == node.internal_addr && **name != node.name)
                {
                    return Err(refuse(
                        "AXONIQ-2306",
                        format!("internal address {} is already registered by node {other}", node.internal_addr),
                    ));
                }
                self.nodes.insert(node.name.clone(), node.clone());
                // The first node founds `_admin`; every node is one of its primaries.
                let admin = self.groups.entry(ADMIN.to_owned()).or_default();
                if admin.members.is_empty() {
                    admin.initial.insert(node.name.clone());
                }
                admin.members.insert(node.name.clone(), Role::Primary);
                self.undepart(ADMIN, &node.name);
                self.contexts.entry(ADMIN.to_owned()).or_insert(ContextInfo { group: ADMIN.to_owned() });
                Ok(())
            }
            AdminCommand::CreateGroup { name, members } => {
                check_name(name, "replication group")?;
                if self.groups.contains_key(name) {
                    return Err(refuse("AXONIQ-1305", format!("replication group {name} already exists")));
                }
                if members.is_empty() {
                    return Err(refuse("AXONIQ-2309", "Add at least one node"));
                }
                for node in members.keys() {
                    self.known_node(node)?;
                }
                let initial: BTreeSet<String> =
                    members.iter().filter(|(_, role)| **role == Role::Primary).map(|(n, _)| n.clone()).collect();
                if initial.is_empty() {
                    return Err(refuse("AXONIQ-2309", format!("replication group {name} needs at least one PRIMARY")));
                }
                self.departed.remove(name);
                self.groups
                    .insert(name.clone(), GroupInfo { members: members.clone(), initial, min_active_backups: None });
                Ok(())
            }
            AdminCommand::SetMember { group, node, role } => {
                self.known_node(node)?;
                let info = self.known_group(group)?;
                if group == ADMIN && *role != Role::Primary {
                    return Err(refuse("AXONIQ-2309", "every member of _admin is a PRIMARY"));
                }
                let mut members = info.members.clone();
                members.insert(node.clone(), *role);
                has_primary(group, &members)?;
                self.keeps_history(group, node, &members)?;
                self.groups.entry(group.clone()).or_default().members = members;
                self.undepart(group, node);
                Ok(())
            }
            AdminCommand::RemoveMember { group, node, preserve } => {
                let info = self.known_group(group)?;
                if !info.members.contains_key(node) {
                    return Err(refuse("AXONIQ-1301", format!("node {node} is not a member of {group}")));
                }
                let mut members = info.members.clone();
                members.remove(node);
                has_primary(group, &members)?;
                self.keeps_history(group, node, &members)?;
                self.groups.entry(group.clone()).or_default().members = members;
                self.departed.entry(group.clone()).or_default().insert(node.clone(), Departure { preserve: *preserve });
                Ok(())
            }
            AdminCommand::SetMinActiveBackups { group, min_active_backups } => {
                self.known_group(group)?;
                self.groups.entry(group.clone()).or_default().min_active_backups = *min_active_backups;
                Ok(())
            }
            AdminCommand::DeleteGroup { name, preserve } => {
                if name == ADMIN {
                    return Err(refuse("AXONIQ-2304", "the _admin replication group cannot be deleted"));
                }
                let info = self.known_group(name)?.clone();
                let contexts = self.contexts_of(name);
                if !contexts.is_empty() {
                    return Err(refuse(
                        "AXONIQ-2309",
                        format!("replication group {name} still carries contexts {}", contexts.join(", ")),
                    ));
                }
                self.groups.remove(name);
                let departed = self.departed.entry(name.clone()).or_default();
                for node in info.members.keys() {
                    departed.insert(node.clone(), Departure { preserve: *preserve });
                }
                Ok(())
            }
            AdminCommand::CreateContext { name, group } => {
                check_name(name, "context")?;
                if self.contexts.contains_key(name) {
                    return Err(refuse("AXONIQ-1304", format!("context {name} already exists")));
                }
                if group == ADMIN {
                    return Err(refuse("AXONIQ-2308", "contexts cannot be added to _admin"));
                }
                self.known_group(group)?;
                self.deleted_contexts.remove(name);
                self.contexts.insert(name.clone(), ContextInfo { group: group.clone() });
                Ok(())
            }
            AdminCommand::DeleteContext { name, preserve } => {
                if name == ADMIN {
                    return Err(refuse("AXONIQ-2304", "the _admin context cannot be deleted"));
                }
                if self.contexts.remove(name).is_none() {
                    return Err(refuse("AXONIQ-1302", format!("context {name} not found")));
                }
                self.deleted_contexts.insert(name.clone(), Departure { preserve: *preserve });
                Ok(())
            }
            AdminCommand::SetApplication { name, description, roles, meta_data, token } => {
                if !ranvier_wire::valid_name(name) {
                    return Err(refuse(
                        "AXONIQ-2308",
                        format!(
                            "invalid application name {name:?}: expected a letter, then letters, digits, '@', '_' or '-'"
                        ),
                    ));
                }
                check_roles(roles).map_err(|message| refuse("AXONIQ-2510", message))?;
                let token = match (self.applications.get(name), token) {
                    (_, Some(token)) => token.clone(),
                    (Some(existing), None) => existing.token.clone(),
                    (None, None) => return Err(no_application(name)),
                };
                let application = Application {
                    description: description.clone(),
                    roles: roles.clone(),
                    meta_data: meta_data.clone(),
                    token,
                };
                self.applications.insert(name.clone(), application);
                Ok(())
            }
            AdminCommand::RenewApplicationToken { name, token } => {
                let application = self.applications.get_mut(name).ok_or_else(|| no_application(name))?;
                application.token = token.clone();
                Ok(())
            }
            AdminCommand::DeleteApplication { name } => {
                self.applications.remove(name).map(|_| ()).ok_or_else(|| no_application(name))
            }
        }
    }

    fn known_node(&self, node: &str) -> Result<&NodeInfo, Refusal> {
        self.nodes.get(node).ok_or_else(|| refuse("AXONIQ-1301", format!("node {node} is not registered")))
    }

    fn known_group(&self, group: &str) -> Result<&GroupInfo, Refusal> {
        self.groups.get(group).ok_or_else(|| refuse("AXONIQ-1302", format!("replication group {group} not found")))
    }

    fn undepart(&mut self, group: &str, node: &str) {
        if let Some(departed) = self.departed.get_mut(group) {
            departed.remove(node);
            if departed.is_empty() {
                self.departed.remove(group);
            }
        }
    }
}

impl ClusterModel {
    /// Refuses to let the last SECONDARY of a group that carries contexts
    /// stop storing events: the primaries may have retired old segments to
    /// it (see `cluster::tier`), and it may be the only node that holds them.
    /// Making it a PRIMARY (or a backup) keeps its files and is allowed.
    fn keeps_history(&self, group: &str, node: &str, after: &BTreeMap<String, Role>) -> Result<(), Refusal> {
        let secondaries =
            |members: &BTreeMap<String, Role>| members.values().filter(|r| **r == Role::Secondary).count();
        let before = self.groups.get(group).map(|g| &g.members);
        let was_secondary = before.and_then(|m| m.get(node)) == Some(&Role::Secondary);
        let still_stores = after.get(node).is_some_and(|role| role.stores_events());
        if was_secondary && !still_stores && secondaries(after) == 0 && !self.contexts_of(group).is_empty() {
            return Err(refuse(
                "AXONIQ-2309",
                format!(
                    "{node} is the last SECONDARY of replication group {group}: the primaries may keep old events \
                     only there; add another SECONDARY or make {node} a PRIMARY first"
                ),
            ));
        }
        Ok(())
    }
}

fn has_primary(group: &str, members: &BTreeMap<String, Role>) -> Result<(), Refusal> {
    if members.values().any(|role| *role == Role::Primary) {
        Ok(())
    } else {
        Err(refuse("AXONIQ-2309", format!("replication group {group} must keep at least one PRIMARY")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> AdminCommand {
        AdminCommand::RegisterNode(NodeInfo {
            name: name.into(),
            internal_addr: format!("{name}:8224"),
            host_name: name.into(),
            grpc_port: 8124,
            http_port: 8024,
        })
    }

    fn model(nodes: &[&str]) -> ClusterModel {
        let mut model = ClusterModel::default();
        for name in nodes {
            model.apply(&node(name)).unwrap();
        }
        model
    }

    fn members(list: &[(&str, Role)]) -> BTreeMap<String, Role> {
        list.iter().map(|(n, r)| (n.to_string(), *r)).collect()
    }

    #[test]
    fn calls_a_node_cannot_serve_go_to_the_other_primaries_only() {
        let mut model = model(&["a", "b", "c", "d", "e"]);
        let roles = [("a", Role::Primary), ("b", Role::Primary), ("c", Role::ActiveBackup), ("d", Role::Secondary)];
        model.apply(&AdminCommand::CreateGroup { name: "orders".into(), members: members(&roles) }).unwrap();
        let names = |nodes: Vec<&NodeInfo>| nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
        // From outside the group (e), and from a primary that has not
        // opened it yet (a): never back to itself, never to a backup.
        assert_eq!(names(model.primaries_except("orders", "e")), ["a", "b"]);
        assert_eq!(names(model.primaries_except("orders", "a")), ["b"]);
        assert!(model.primaries_except("billing", "e").is_empty(), "no such group");
    }

    #[test]
    fn a_group_keeps_its_own_min_active_backups_until_cleared_or_recreated() {
        let mut model = model(&["a", "b"]);
        let create = AdminCommand::CreateGroup {
            name: "orders".into(),
            members: members(&[("a", Role::Primary), ("b", Role::ActiveBackup)]),
        };
        model.apply(&create).unwrap();
        let set = |group: &str, n| AdminCommand::SetMinActiveBackups { group: group.into(), min_active_backups: n };
        assert_eq!(model.apply(&set("billing", Some(1))).unwrap_err().code, "AXONIQ-1302");
        model.apply(&set("orders", Some(0))).unwrap();
        assert_eq!(model.groups["orders"].min_active_backups, Some(0));
        // Carried through the model's snapshot; a snapshot written before
        // the setting existed reads as "the leader's".
        let json = serde_json::to_value(&model).unwrap();
        let back: ClusterModel = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.groups["orders"].min_active_backups, Some(0));
        let mut old = json;
        old["groups"]["orders"].as_object_mut().unwrap().remove("min_active_backups");
        let back: ClusterModel = serde_json::from_value(old).unwrap();
        assert_eq!(back.groups["orders"].min_active_backups, None);
        model.apply(&set("orders", None)).unwrap();
        assert_eq!(model.groups["orders"].min_active_backups, None);
        // A group deleted and created again starts from the leader's.
        model.apply(&set("orders", Some(2))).unwrap();
        model.apply(&AdminCommand::DeleteGroup { name: "orders".into(), preserve: false }).unwrap();
        model.apply(&create).unwrap();
        assert_eq!(model.groups["orders"].min_active_backups, None);
    }

    #[test]
    fn registering_nodes_builds_admin_from_the_first() {
        let model = model(&["a", "b"]);
        assert!(model.initialized());
        let admin = &model.groups[ADMIN];
        assert_eq!(admin.initial, BTreeSet::from(["a".to_string()]));
        assert_eq!(admin.members, members(&[("a", Role::Primary), ("b", Role::Primary)]));
        assert_eq!(model.group_of(ADMIN), Some(ADMIN));
    }

    #[test]
    fn init_and_join_change_all_or_nothing() {
        let info = |name: &str| NodeInfo {
            name: name.into(),
            internal_addr: format!("{name}:8224"),
            host_name: name.into(),
            grpc_port: 8124,
            http_port: 8024,
        };
        let mut model = ClusterModel::default();
        let join = |name: &str, contexts: &[&str]| AdminCommand::JoinCluster {
            node: info(name),
            contexts: contexts.iter().map(|c| c.to_string()).collect(),
        };
        assert_eq!(model.apply(&join("b", &["default"])).unwrap_err().code, "AXONIQ-2307");
        let init = AdminCommand::InitCluster { node: info("a"), contexts: vec!["default".into(), "orders".into()] };
        model.apply(&init).unwrap();
        assert_eq!(model.apply(&init).unwrap_err().code, "AXONIQ-2306", "init runs once");
        assert_eq!(model.group_of("orders"), Some("orders"));
        assert_eq!(model.role("orders", "a"), Some(Role::Primary));
        // An unknown context refuses the whole join: b is not registered.
        assert_eq!(model.apply(&join("b", &["default", "nope"])).unwrap_err().code, "AXONIQ-1302");
        assert!(!model.nodes.contains_key("b"));
        model.apply(&join("b", &["default"])).unwrap();
        assert_eq!(model.role("default", "b"), Some(Role::Primary));
        assert_eq!(model.role("orders", "b"), None);
        assert_eq!(model.role(ADMIN, "b"), Some(Role::Primary));
        // Joining again keeps a role set since (idempotent, no demotion).
        model
            .apply(&AdminCommand::SetMember { group: "default".into(), node: "b".into(), role: Role::Secondary })
            .unwrap();
        model.apply(&join("b", &["default"])).unwrap();
        assert_eq!(model.role("default", "b"), Some(Role::Secondary));
        // A bad context name in init refuses it all.
        let mut fresh = ClusterModel::default();
        let bad = AdminCommand::InitCluster { node: info("a"), contexts: vec!["default".into(), "9x".into()] };
        assert_eq!(fresh.apply(&bad).unwrap_err().code, "AXONIQ-2308");
        assert!(!fresh.initialized());
    }

    #[test]
    fn an_address_belongs_to_one_node() {
        let mut model = model(&["a"]);
        let mut other = NodeInfo {
            name: "z".into(),
            internal_addr: "a:8224".into(),
            host_name: "z".into(),
            grpc_port: 1,
            http_port: 2,
        };
        assert_eq!(model.apply(&AdminCommand::RegisterNode(other.clone())).unwrap_err().code, "AXONIQ-2306");
        other.internal_addr = "z:8224".into();
        model.apply(&AdminCommand::RegisterNode(other)).unwrap();
    }

    #[test]
    fn groups_and_contexts_follow_axons_rules() {
        let mut model = model(&["a", "b", "c"]);
        let create =
            |name: &str, list: &[(&str, Role)]| AdminCommand::CreateGroup { name: name.into(), members: members(list) };
        // Bad names, unknown nodes, no primary, no members.
        assert_eq!(model.apply(&create("1x", &[("a", Role::Primary)])).unwrap_err().code, "AXONIQ-2308");
        assert_eq!(model.apply(&create("_x", &[("a", Role::Primary)])).unwrap_err().code, "AXONIQ-2308");
        assert_eq!(model.apply(&create("g", &[("q", Role::Primary)])).unwrap_err().code, "AXONIQ-1301");
        assert_eq!(model.apply(&create("g", &[("a", Role::PassiveBackup)])).unwrap_err().code, "AXONIQ-2309");
        assert_eq!(model.apply(&create("g", &[])).unwrap_err().code, "AXONIQ-2309");
        model.apply(&create("g", &[("a", Role::Primary), ("b", Role::Primary), ("c", Role::PassiveBackup)])).unwrap();
        assert_eq!(model.groups["g"].initial.len(), 2);
        assert_eq!(model.apply(&create("g", &[("a", Role::Primary)])).unwrap_err().code, "AXONIQ-1305");

        let context = |name: &str, group: &str| AdminCommand::CreateContext { name: name.into(), group: group.into() };
        model.apply(&context("orders", "g")).unwrap();
        assert_eq!(model.apply(&context("orders", "g")).unwrap_err().code, "AXONIQ-1304");
        assert_eq!(model.apply(&context("x", "nope")).unwrap_err().code, "AXONIQ-1302");
        assert_eq!(model.apply(&context("x", ADMIN)).unwrap_err().code, "AXONIQ-2308");
        assert_eq!(model.contexts_of("g"), vec!["orders".to_string()]);

        // A group with contexts cannot go; _admin never.
        let delete = |name: &str| AdminCommand::DeleteGroup { name: name.into(), preserve: false };
        assert_eq!(model.apply(&delete("g")).unwrap_err().code, "AXONIQ-2309");
        assert_eq!(model.apply(&delete(ADMIN)).unwrap_err().code, "AXONIQ-2304");
        let drop_context = |name: &str| AdminCommand::DeleteContext { name: name.into(), preserve: false };
        assert_eq!(model.apply(&drop_context(ADMIN)).unwrap_err().code, "AXONIQ-2304");
        model.apply(&drop_context("orders")).unwrap();
        assert_eq!(model.apply(&drop_context("orders")).unwrap_err().code, "AXONIQ-1302");
        model.apply(&delete("g")).unwrap();
        assert!(!model.groups.contains_key("g"));
        assert_eq!(model.departed["g"].len(), 3, "every member must close its files");
    }

    #[test]
    fn members_change_role_in_place_and_a_group_keeps_a_primary() {
        let mut model = model(&["a", "b"]);
        let group = AdminCommand::CreateGroup { name: "g".into(), members: members(&[("a", Role::Primary)]) };
        model.apply(&group).unwrap();
        let set = |node: &str, role| AdminCommand::SetMember { group: "g".into(), node: node.into(), role };
        model.apply(&set("b", Role::Primary)).unwrap();
        model.apply(&set("b", Role::Secondary)).unwrap();
        assert_eq!(model.role("g", "b"), Some(Role::Secondary));
        assert_eq!(model.apply(&set("a", Role::ActiveBackup)).unwrap_err().code, "AXONIQ-2309");
        assert_eq!(model.role("g", "a"), Some(Role::Primary), "a refused change leaves the model unchanged");
        assert_eq!(model.apply(&set("q", Role::Primary)).unwrap_err().code, "AXONIQ-1301");
        let admin = AdminCommand::SetMember { group: ADMIN.into(), node: "b".into(), role: Role::Secondary };
        assert_eq!(model.apply(&admin).unwrap_err().code, "AXONIQ-2309");

        let remove =
            |node: &str, preserve| AdminCommand::RemoveMember { group: "g".into(), node: node.into(), preserve };
        assert_eq!(model.apply(&remove("a", false)).unwrap_err().code, "AXONIQ-2309");
        model.apply(&remove("b", true)).unwrap();
        assert_eq!(model.departed["g"]["b"], Departure { preserve: true });
        assert_eq!(model.apply(&remove("b", true)).unwrap_err().code, "AXONIQ-1301");
        // Adding it back clears the departure.
        model.apply(&set("b", Role::ActiveBackup)).unwrap();
        assert!(!model.departed.contains_key("g"));
    }

    #[test]
    fn the_last_secondary_of_a_group_with_contexts_keeps_storing_events() {
        let mut model = model(&["a", "b", "c"]);
        let group = AdminCommand::CreateGroup {
            name: "g".into(),
            members: members(&[("a", Role::Primary), ("b", Role::Secondary), ("c", Role::Secondary)]),
        };
        model.apply(&group).unwrap();
        model.apply(&AdminCommand::CreateContext { name: "orders".into(), group: "g".into() }).unwrap();
        let set = |node: &str, role| AdminCommand::SetMember { group: "g".into(), node: node.into(), role };
        let remove = |node: &str| AdminCommand::RemoveMember { group: "g".into(), node: node.into(), preserve: false };
        // One of two secondaries may go.
        model.apply(&remove("c")).unwrap();
        // The last one may not stop storing events…
        for refused in [remove("b"), set("b", Role::MessagingOnly)] {
            let refusal = model.apply(&refused).unwrap_err();
            assert_eq!(refusal.code, "AXONIQ-2309");
            assert!(refusal.message.contains("last SECONDARY"), "{}", refusal.message);
        }
        assert_eq!(model.role("g", "b"), Some(Role::Secondary));
        // …but may become a primary (keeping its files), then leave as one.
        model.apply(&set("b", Role::Primary)).unwrap();
        model.apply(&remove("b")).unwrap();
    }

    #[test]
    fn applications_are_registered_changed_renewed_and_deleted_and_bad_ones_refused() {
        let fresh = model(&["a"]);
        let mut model = fresh.clone();
        let token = |prefix: &str| StoredToken { prefix: prefix.into(), hash: format!("hash-{prefix}") };
        let roles = |context: &str, role| BTreeMap::from([(context.to_owned(), BTreeSet::from([role]))]);
        let set = |name: &str, roles, token| AdminCommand::SetApplication {
            name: name.into(),
            description: "d".into(),
            roles,
            meta_data: BTreeMap::new(),
            token,
        };
        // A new application needs a token.
        assert_eq!(
            model.apply(&set("app", roles("orders", AppRole::ReadEvents), None)).unwrap_err().code,
            "AXONIQ-1300"
        );
        model.apply(&set("app", roles("orders", AppRole::ReadEvents), Some(token("one")))).unwrap();
        // A change without a token keeps the token.
        model.apply(&set("app", roles("*", AppRole::UseContext), None)).unwrap();
        assert_eq!(model.applications["app"].token, token("one"));
        assert_eq!(model.applications["app"].roles, roles("*", AppRole::UseContext));
        model.apply(&AdminCommand::RenewApplicationToken { name: "app".into(), token: token("two") }).unwrap();
        assert_eq!(model.applications["app"].token, token("two"));

        let refusals = [
            (set("bad name", roles("orders", AppRole::ReadEvents), Some(token("x"))), "AXONIQ-2308"),
            (set("app2", BTreeMap::new(), Some(token("x"))), "AXONIQ-2510"),
            (set("app2", roles("orders", AppRole::Admin), Some(token("x"))), "AXONIQ-2510"),
            (AdminCommand::RenewApplicationToken { name: "nope".into(), token: token("x") }, "AXONIQ-1300"),
            (AdminCommand::DeleteApplication { name: "nope".into() }, "AXONIQ-1300"),
        ];
        for (command, code) in refusals {
            let before = model.clone();
            assert_eq!(model.apply(&command).unwrap_err().code, code, "{command}");
            assert_eq!(model, before, "a refused command changes nothing");
        }
        model.apply(&AdminCommand::DeleteApplication { name: "app".into() }).unwrap();
        assert!(model.applications.is_empty());
        // A model stored before applications existed still reads.
        let mut old = serde_json::to_value(&fresh).unwrap();
        old.as_object_mut().unwrap().remove("applications");
        assert_eq!(serde_json::from_value::<ClusterModel>(old).unwrap(), fresh);
    }
}
