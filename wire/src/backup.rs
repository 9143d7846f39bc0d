//! What a backup holds: its manifest (`manifest.json` in the backup's
//! folder), written by `ranvierctl backup` and read by `verify`, `prune`,
//! `restore` and, later, the operator's Backup status.

use serde::{Deserialize, Serialize};

/// The manifest's file name in a backup folder.
pub const MANIFEST: &str = "manifest.json";
/// The format this code writes.
pub const FORMAT: u32 = 1;

/// A complete backup: written last, so a folder without it (or still named
/// `*.partial`) is not a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The backup's folder name (`backup-<milliseconds since the epoch>`).
    pub name: String,
    /// When it started, in milliseconds since the epoch.
    pub created_ms: u64,
    /// The node it was taken from.
    pub server: String,
    /// The backup it continues (its unchanged closed segments are there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The cluster state (`control/<file>`), taken first; none from a
    /// standalone node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<BackupFile>,
    /// The replication logs of the node's groups (`log/<group>/<file>`),
    /// taken after the cluster state and before the stores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogBackup>,
    /// Every store backed up.
    pub stores: Vec<StoreBackup>,
}

/// One replication group's folder: its log segments and state files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBackup {
    /// The group.
    pub group: String,
    /// Its files.
    pub files: Vec<BackupFile>,
}

/// One context's event or snapshot store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreBackup {
    /// The context.
    pub context: String,
    /// `EVENT` or `SNAPSHOT`.
    pub kind: String,
    /// First token of the newest closed segment (-1: none).
    pub last_closed_segment: i64,
    /// Every event before this token is in the backup.
    pub next_token: u64,
    /// Its files.
    pub files: Vec<BackupFile>,
}

/// One file of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupFile {
    /// The file's name in the store's folder.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// The backup folder holding it (this one, or an earlier one for a
    /// closed segment an incremental backup did not copy again).
    pub stored_in: String,
    /// A closed segment's file (never changes again).
    pub closed: bool,
}

/// The answer of `GET /v1/backup/eventstore`: Axon's fields, and Ranvier's
/// `activeSegment` and `nextToken`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupListing {
    /// First token of the newest closed segment (-1: none).
    pub last_closed_segment: i64,
    /// Absolute paths of the files to copy.
    pub filenames: Vec<String>,
    /// First token of the active segment.
    #[serde(default)]
    pub active_segment: u64,
    /// The store's next token when listed: the copy holds at least every
    /// event before it.
    #[serde(default)]
    pub next_token: u64,
}

/// What `ranvierctl backup --summary FILE` writes once a backup is
/// complete: the figures a Backup resource's status shows. Small on
/// purpose: a pod's termination message holds 4 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The backup's folder name.
    pub name: String,
    /// Bytes of every file the backup holds (its own and those it refers to).
    pub bytes: u64,
    /// Bytes this run copied.
    pub copied_bytes: u64,
    /// SHA-256 of its `manifest.json`, hex.
    pub manifest_sha256: String,
    /// Where each store's copy ends.
    pub positions: Vec<Position>,
}

/// Every event (or snapshot) of a store before `next_token` is in a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// The context.
    pub context: String,
    /// `EVENT` or `SNAPSHOT`.
    pub kind: String,
    /// The store's next token when it was listed.
    pub next_token: u64,
}

impl Summary {
    /// The summary of `manifest`, whose file's SHA-256 is `manifest_sha256`.
    pub fn of(manifest: &Manifest, manifest_sha256: String, copied_bytes: u64) -> Self {
        let files = manifest.stores.iter().flat_map(|s| &s.files);
        let logs = manifest.logs.iter().flat_map(|l| &l.files);
        let bytes = files.chain(logs).chain(manifest.control.iter()).map(|f| f.size).sum();
        let positions = manifest
            .stores
            .iter()
            .map(|s| Position { context: s.context.clone(), kind: s.kind.clone(), next_token: s.next_token })
            .collect();
        Summary { name: manifest.name.clone(), bytes, copied_bytes, manifest_sha256, positions }
    }
}
