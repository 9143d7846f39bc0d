//! The rules of a `RanvierCluster` spec that the operator enforces itself
//! (API servers before 1.25 ignore the CRD's CEL rules), turning a spec
//! into a [`ValidCluster`], the only input of the builders.

use std::collections::BTreeSet;

use ranvier_crds::RanvierCluster;
use ranvier_crds::cluster::NodeSet;

/// Property keys the operator sets itself; a spec may not override them.
pub const RESERVED_KEYS: &[&str] = &[
    "axoniq.axonserver.name",
    "axoniq.axonserver.hostname",
    "axoniq.axonserver.domain",
    "axoniq.axonserver.internal-hostname",
    "axoniq.axonserver.internal-domain",
    "axoniq.axonserver.port",
    "axoniq.axonserver.internal-port",
    "server.port",
    "axoniq.axonserver.event.storage",
    "axoniq.axonserver.snapshot.storage",
    "axoniq.axonserver.replication.log-storage-folder",
    "axoniq.axonserver.autocluster.first",
    "axoniq.axonserver.autocluster.contexts",
    "axoniq.axonserver.accesscontrol.internal-token",
    "ranvier.bind-address",
];

/// Property keys a spec sets elsewhere, with where: access control is
/// `spec.accessControl` (the operator must hold the admin token for its own
/// admin calls), and TLS is not supported by the operator yet (its admin
/// calls and the probes speak plain HTTP).
pub const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    ("axoniq.axonserver.accesscontrol.enabled", "use spec.accessControl"),
    ("axoniq.axonserver.accesscontrol.token", "use spec.accessControl (the tokens Secret)"),
    ("axoniq.axonserver.accesscontrol.admin-token", "use spec.accessControl (the tokens Secret)"),
    ("axoniq.axonserver.accesscontrol.systemtokenfile", "use spec.accessControl (the tokens Secret)"),
    ("axoniq.axonserver.ssl.enabled", "TLS is not supported by the operator yet"),
    ("server.ssl.enabled", "TLS is not supported by the operator yet"),
];

/// Longest cluster name: pod names (`<cluster>-<set>-<n>`) and the headless
/// Service name (`<cluster>-internal`) must stay DNS labels (63).
pub const CLUSTER_NAME_MAX: usize = 24;

/// A cluster spec that passed every rule, with what the builders need.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidCluster {
    /// The RanvierCluster's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The resource (spec and metadata) as read.
    pub resource: RanvierCluster,
}

impl ValidCluster {
    /// The node sets, in spec order (the first pod of the first founds the
    /// cluster).
    pub fn node_sets(&self) -> &[NodeSet] {
        &self.resource.spec.node_sets
    }

    /// Nodes the spec asks for, over every set.
    pub fn node_count(&self) -> i32 {
        self.node_sets().iter().map(|set| set.replicas).sum()
    }
}

/// Why a spec is refused: every broken rule, for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RanvierCluster: {}", .0.join("; "))]
pub struct Invalid(pub Vec<String>);

/// Checks every rule of the spec; `namespace` is where it lives (the
/// resource's own, else the caller's default).
pub fn validate(cluster: &RanvierCluster, namespace: &str) -> Result<ValidCluster, Invalid> {
    let mut problems = Vec::new();
    let name = cluster.metadata.name.clone().unwrap_or_default();
    if !is_dns_label(&name) || name.len() > CLUSTER_NAME_MAX {
        problems
            .push(format!("the name {name:?} must be a lower-case DNS label of at most {CLUSTER_NAME_MAX} characters"));
    }
    let spec = &cluster.spec;
    if spec.image.trim().is_empty() {
        problems.push("image must name a container image".to_owned());
    }
    if spec.node_sets.is_empty() {
        problems.push("nodeSets needs at least one node set".to_owned());
    }
    let mut seen = BTreeSet::new();
    for set in &spec.node_sets {
        if !is_dns_label(&set.name) || set.name.len() > 30 {
            problems
                .push(format!("node set name {:?} must be a lower-case DNS label of at most 30 characters", set.name));
        }
        if !seen.insert(set.name.as_str()) {
            problems.push(format!("node set name {:?} is used twice", set.name));
        }
        if set.replicas < 0 {
            problems.push(format!("node set {}: replicas must not be negative", set.name));
        }
        for (what, storage) in [("eventsStorage", &set.events_storage), ("logStorage", &set.log_storage)] {
            if !is_quantity(&storage.size) {
                problems
                    .push(format!("node set {}: {what}.size {:?} is not a quantity like 10Gi", set.name, storage.size));
            }
        }
    }
    if spec.node_sets.first().is_some_and(|set| set.replicas < 1) {
        problems.push("the first node set founds the cluster: it needs at least one replica".to_owned());
    }
    for key in spec.properties.keys() {
        if RESERVED_KEYS.iter().any(|reserved| same_key(key, reserved)) {
            problems.push(format!("properties: {key} is set by the operator"));
        }
        if let Some((_, instead)) = UNSUPPORTED_KEYS.iter().find(|(unsupported, _)| same_key(key, unsupported)) {
            problems.push(format!("properties: {key} cannot be set here: {instead}"));
        }
    }
    for context in &spec.contexts {
        if context.is_empty()
            || context.starts_with('_')
            || context.contains(char::is_whitespace)
            || context.contains(',')
        {
            problems.push(format!("context name {context:?} is not allowed"));
        }
    }
    if let Some(from) = spec.bootstrap.as_ref().and_then(|b| b.from_backup.as_ref()) {
        if !is_dns_subdomain(&from.volume_claim) {
            problems.push(format!("bootstrap.fromBackup.volumeClaim {:?} is not a claim name", from.volume_claim));
        }
        if let Some(backup) = &from.backup
            && !is_backup_name(backup)
        {
            problems.push(format!("bootstrap.fromBackup.backup {backup:?} is not a backup folder (backup-<digits>)"));
        }
    }
    if !problems.is_empty() {
        return Err(Invalid(problems));
    }
    let namespace = cluster.metadata.namespace.clone().unwrap_or_else(|| namespace.to_owned());
    Ok(ValidCluster { name, namespace, resource: cluster.clone() })
}

/// RFC 1123 label: lower-case letters, digits and '-', starting and ending
/// with a letter or digit, at most 63 characters.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// RFC 1123 subdomain (the names of most objects): dot-separated labels,
/// at most 253 characters.
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// A backup's folder name, as `ranvierctl backup` makes it.
pub fn is_backup_name(text: &str) -> bool {
    text.strip_prefix("backup-").is_some_and(|ms| !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()))
}

/// Longest Backup name: its Job (`<name>-backup`) names its pods, whose
/// `job-name` label must stay a DNS label.
pub const BACKUP_NAME_MAX: usize = 56;
/// Longest BackupSchedule name: its CronJob (`<name>-backup`) may have at
/// most 52 characters, since its Jobs' names add 11.
pub const SCHEDULE_NAME_MAX: usize = 45;

/// Checks what a Backup or BackupSchedule names (`what`, `name`) and where
/// it writes; answers every broken rule.
pub fn backup_problems(what: &str, name: &str, target: &ranvier_crds::backup::BackupTarget) -> Vec<String> {
    let mut problems = Vec::new();
    let longest = if what == "BackupSchedule" { SCHEDULE_NAME_MAX } else { BACKUP_NAME_MAX };
    if !is_dns_label(name) || name.len() > longest {
        problems.push(format!("the {what} name {name:?} must be a DNS label of at most {longest} characters"));
    }
    if !is_dns_label(&target.cluster) {
        problems.push(format!("cluster {:?} is not a RanvierCluster name", target.cluster));
    }
    if !is_dns_subdomain(&target.volume_claim) {
        problems.push(format!("volumeClaim {:?} is not a claim name", target.volume_claim));
    }
    for context in &target.contexts {
        if context.is_empty() || context.contains(',') || context.contains(char::is_whitespace) {
            problems.push(format!("context name {context:?} is not allowed"));
        }
    }
    problems
}

/// A cron schedule as the CronJob controller reads it: five fields, or
/// one of its `@` shorthands.
pub fn is_cron(schedule: &str) -> bool {
    const SHORTHANDS: [&str; 7] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
    let schedule = schedule.trim();
    if schedule.starts_with('@') {
        return SHORTHANDS.contains(&schedule);
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    fields.len() == 5 && fields.iter().all(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || ",-*/?".contains(c)))
}

/// A Kubernetes quantity as storage sizes are written: digits (with an
/// optional fraction) and an optional binary or decimal suffix.
fn is_quantity(text: &str) -> bool {
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E"];
    !number.is_empty() && number.parse::<f64>().is_ok_and(|n| n > 0.0) && suffixes.contains(&suffix)
}

/// Whether a property key as written names `canonical`, in any of the
/// spellings the node's relaxed binding accepts (`adminToken`,
/// `admin_token`, `ADMIN-TOKEN`).
fn same_key(key: &str, canonical: &str) -> bool {
    let simple = |text: &str| text.trim().chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_lowercase();
    simple(key) == simple(canonical)
}
