//! `ranvierctl backup`, `backup verify`, `backup prune` and `restore`: the
//! event and snapshot stores of a node, copied through its backup
//! endpoints into a folder of their own.
//!
//! A backup is `TARGET/backup-<ms>/`: `<context>/<EVENT|SNAPSHOT>/<file>`
//! and `manifest.json` (every file with its size and SHA-256, each store's
//! last closed segment and the token it holds every event before). It is
//! written as `backup-<ms>.partial/`, every file and folder fsynced, checked
//! against the manifest, and only then renamed: a folder without
//! `.partial` and with a manifest is a complete backup. `--incremental`
//! copies only the closed segments the newest complete backup lacks (closed
//! segments never change) and refers to it for the rest.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ranvier_wire::backup::{BackupFile, BackupListing, FORMAT, LogBackup, MANIFEST, Manifest, StoreBackup, Summary};
use ranvier_wire::http::encode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Call;
use super::http::{DownloadFailed, Server, Unreachable, download, send};

/// Store kinds, as the backup endpoints name them.
const KINDS: [&str; 2] = ["EVENT", "SNAPSHOT"];

/// Why a backup command failed; the message names what and where.
pub struct Failed(pub String);

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Failed {
    move |e| Failed(format!("{what}: {e}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn get_json<T: serde::de::DeserializeOwned>(server: &Server, token: Option<&str>, path: String) -> Result<T, Failed> {
    let call = Call { method: "GET", path: path.clone(), body: None };
    let answer =
        send(server, token, &call).map_err(|Unreachable(m)| Failed(format!("cannot reach the server: {m}")))?;
    if answer.status != 200 {
        let code = answer.error_code.unwrap_or_else(|| format!("HTTP {}", answer.status));
        return Err(Failed(format!("GET {path}: {code}: {}", answer.body.trim())));
    }
    serde_json::from_str(&answer.body).map_err(|e| Failed(format!("GET {path}: unexpected answer: {e}")))
}

fn sync_dir(dir: &Path) -> Result<(), Failed> {
    ranvier_node::durable::sync_dir(dir).map_err(|f| Failed(format!("{} {}: {}", f.op, f.path.display(), f.source)))
}

/// Of `servers` (server, URL), the one to back up: the only one given, or
/// the first whose readiness probe answers 200 and that stores the
/// `contexts` asked for (any, when none is named). A node that is down,
/// starting, cut off from its cluster or storing none of them (a
/// MESSAGING_ONLY member) is passed over; the reasons are printed.
pub fn first_ready(
    mut servers: Vec<(Server, String)>,
    token: Option<&str>,
    contexts: &[String],
) -> Result<(Server, String), Failed> {
    if servers.len() == 1 {
        return servers.pop().ok_or_else(|| Failed("no server named".into()));
    }
    let probe = Call { method: "GET", path: "/actuator/health/readiness".into(), body: None };
    let mut passed = Vec::new();
    for (server, url) in servers {
        match send(&server, token, &probe) {
            Ok(answer) if answer.status == 200 => match stored_contexts(&server, token) {
                Ok(stored) => match missing(contexts, &stored) {
                    None => {
                        if !passed.is_empty() {
                            eprintln!("backup: {url} is ready (passed over: {})", passed.join("; "));
                        }
                        return Ok((server, url));
                    }
                    Some(why) => passed.push(format!("{url}: {why}")),
                },
                Err(Failed(reason)) => passed.push(format!("{url}: {reason}")),
            },
            Ok(answer) => passed.push(format!("{url}: not ready (HTTP {})", answer.status)),
            Err(Unreachable(reason)) => passed.push(format!("{url}: {reason}")),
        }
    }
    Err(Failed(format!("no node is ready to be backed up: {}", passed.join("; "))))
}

/// The contexts whose stores the node holds (its `storageContextNames`).
fn stored_contexts(server: &Server, token: Option<&str>) -> Result<Vec<String>, Failed> {
    let me: Value = get_json(server, token, "/v1/public/me".into())?;
    let names = me["storageContextNames"].as_array().or_else(|| me["contextNames"].as_array());
    Ok(names.into_iter().flatten().filter_map(|n| n.as_str().map(str::to_owned)).collect())
}

/// Why a node holding `stored` cannot back up `asked` (every one of them,
/// or something when none is named), if it cannot.
fn missing(asked: &[String], stored: &[String]) -> Option<String> {
    if asked.is_empty() {
        return stored.is_empty().then(|| "stores no context".to_owned());
    }
    let lacking: Vec<&str> = asked.iter().filter(|c| !stored.contains(c)).map(String::as_str).collect();
    (!lacking.is_empty()).then(|| format!("does not store {}", lacking.join(", ")))
}

/// The complete backups in `root`, oldest first.
pub fn complete_backups(root: &Path) -> Result<Vec<Manifest>, Failed> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Failed(format!("{}: {e}", root.display()))),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("backup-") || name.ends_with(".partial") {
            continue;
        }
        if let Ok(text) = fs::read_to_string(entry.path().join(MANIFEST))
            && let Ok(manifest) = serde_json::from_str::<Manifest>(&text)
        {
            found.push(manifest);
        }
    }
    found.sort_by_key(|m| m.created_ms);
    Ok(found)
}

fn file_path(root: &Path, store: &StoreBackup, file: &BackupFile) -> PathBuf {
    root.join(&file.stored_in).join(&store.context).join(&store.kind).join(&file.name)
}

/// What `ranvierctl backup` is asked for besides the server.
pub struct Asked {
    /// Where backups are kept.
    pub target: PathBuf,
    /// The contexts (none: every context the node stores).
    pub contexts: Vec<String>,
    /// Copy only the closed segments the newest complete backup lacks.
    pub incremental: bool,
    /// Prune to this many complete backups once this one is complete.
    pub keep: Option<usize>,
    /// Where to write the [`Summary`] (a pod's termination message file).
    pub summary: Option<PathBuf>,
}

/// `ranvierctl backup --target DIR [-c ctx,..] [--incremental] [--keep N]
/// [--summary FILE]`. A backup that fails leaves nothing behind: its
/// `.partial` folder is removed.
pub fn backup(server: &Server, server_url: &str, token: Option<&str>, asked: &Asked) -> Result<Manifest, Failed> {
    let target = asked.target.as_path();
    fs::create_dir_all(target).map_err(io(target.display()))?;
    let previous = if asked.incremental { complete_backups(target)?.pop() } else { None };
    let created_ms = now_ms();
    let name = format!("backup-{created_ms}");
    let partial = target.join(format!("{name}.partial"));
    fs::create_dir_all(&partial).map_err(io(partial.display()))?;
    let written = write_backup(server, server_url, token, asked, previous, (&name, created_ms), &partial);
    let Written { manifest, copied_bytes, manifest_sha256 } = match written {
        Ok(written) => written,
        Err(failed) => {
            if let Err(e) = fs::remove_dir_all(&partial) {
                eprintln!("backup: could not remove {}: {e}", partial.display());
            }
            return Err(failed);
        }
    };
    let done = target.join(&name);
    fs::rename(&partial, &done).map_err(io(format!("rename {} to {}", partial.display(), done.display())))?;
    sync_dir(target)?;
    if let Some(keep) = asked.keep {
        for removed in prune(target, keep)? {
            eprintln!("backup: pruned {removed} (keeping {keep})");
        }
    }
    if let Some(path) = &asked.summary {
        let summary = Summary::of(&manifest, manifest_sha256, copied_bytes);
        let text = serde_json::to_vec(&summary).map_err(|e| Failed(format!("summary: {e}")))?;
        fs::write(path, text).map_err(io(path.display()))?;
    }
    Ok(manifest)
}

/// What [`write_backup`] wrote.
struct Written {
    manifest: Manifest,
    copied_bytes: u64,
    /// SHA-256 of `manifest.json` as written.
    manifest_sha256: String,
}

/// Writes the backup `name`, started at `created_ms`, into `partial` and
/// checks it.
fn write_backup(
    server: &Server,
    server_url: &str,
    token: Option<&str>,
    asked: &Asked,
    previous: Option<Manifest>,
    (name, created_ms): (&str, u64),
    partial: &Path,
) -> Result<Written, Failed> {
    let target = asked.target.as_path();
    let contexts = if asked.contexts.is_empty() {
        let stored = stored_contexts(server, token)?;
        if stored.is_empty() {
            return Err(Failed(format!("{server_url} stores no context (a MESSAGING_ONLY node?): nothing to back up")));
        }
        stored
    } else {
        asked.contexts.clone()
    };
    // The safe order: the cluster state first, then the logs, then the stores.
    let control = control_state(server, token, partial, name)?;
    let logs = match &control {
        Some(control) => {
            let text = fs::read(partial.join("control").join(&control.name)).map_err(io("the cluster state copy"))?;
            let state: Value = serde_json::from_slice(&text).map_err(|e| Failed(format!("the cluster state: {e}")))?;
            let groups: Vec<String> =
                state["model"]["groups"].as_object().into_iter().flatten().map(|(g, _)| g.clone()).collect();
            replication_logs(server, token, partial, name, &groups)?
        }
        None => Vec::new(),
    };
    let mut stores = Vec::new();
    let (mut copied_files, mut copied_bytes) = (0u64, 0u64);
    for context in &contexts {
        for kind in KINDS {
            let before =
                previous.as_ref().and_then(|p| p.stores.iter().find(|s| &s.context == context && s.kind == kind));
            let after = before.map_or(-1, |s| s.last_closed_segment);
            let listing: BackupListing = get_json(
                server,
                token,
                format!("/v1/backup/eventstore?targetContext={context}&type={kind}&lastClosedSegmentBackedUp={after}"),
            )?;
            let mut files: Vec<BackupFile> =
                before.map(|s| s.files.iter().filter(|f| f.closed).cloned().collect()).unwrap_or_default();
            let dir = partial.join(context).join(kind);
            fs::create_dir_all(&dir).map_err(io(dir.display()))?;
            let active = format!("{:020}.", listing.active_segment);
            for (at, source) in listing.filenames.iter().enumerate() {
                let (file_name, got) = copy_listed(server, token, source, &dir)?;
                copied_files += 1;
                copied_bytes += got.size;
                eprintln!(
                    "backup: {context} {kind} {}/{}: {file_name} ({} bytes)",
                    at + 1,
                    listing.filenames.len(),
                    got.size
                );
                let closed = !file_name.starts_with(&active);
                files.retain(|f| f.name != file_name);
                files.push(BackupFile {
                    name: file_name,
                    size: got.size,
                    sha256: got.sha256,
                    stored_in: name.to_owned(),
                    closed,
                });
            }
            sync_dir(&dir)?;
            files.sort_by(|a, b| a.name.cmp(&b.name));
            stores.push(StoreBackup {
                context: context.clone(),
                kind: kind.to_owned(),
                last_closed_segment: listing.last_closed_segment,
                next_token: listing.next_token,
                files,
            });
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        name: name.to_owned(),
        created_ms,
        server: server_url.to_owned(),
        previous: previous.map(|p| p.name),
        control,
        logs,
        stores,
    };
    // Checked before it counts: every file as the manifest says.
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Failed(format!("manifest: {e}")))?;
    let manifest_path = partial.join(MANIFEST);
    let mut out = fs::File::create(&manifest_path).map_err(io(manifest_path.display()))?;
    out.write_all(&text).and_then(|()| out.sync_all()).map_err(io(manifest_path.display()))?;
    let manifest_sha256 = ranvier_wire::hex(&Sha256::digest(&text));
    for context in &contexts {
        sync_dir(&partial.join(context))?;
    }
    sync_dir(partial)?;
    verify_files(target, &manifest, Some(partial))?;
    eprintln!("backup: {name} complete: {copied_files} files, {copied_bytes} bytes copied");
    Ok(Written { manifest, copied_bytes, manifest_sha256 })
}

/// Downloads `source` (a path the node listed) into `dir` under its own
/// file name, fsynced; answers the name.
fn copy_listed(
    server: &Server,
    token: Option<&str>,
    source: &str,
    dir: &Path,
) -> Result<(String, super::http::Downloaded), Failed> {
    let file_name = Path::new(source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failed(format!("the server listed {source:?}, which names no file")))?;
    let dest = &dir.join(&file_name);
    let mut out = fs::File::create(dest).map_err(io(dest.display()))?;
    let got =
        download(server, token, &format!("/v1/backup/file?path={}", encode(source)), &mut out).map_err(|failure| {
            match failure {
                DownloadFailed::Unreachable(m) => Failed(format!("copying {source}: {m}")),
                DownloadFailed::Refused(status, code, m) => {
                    Failed(format!("copying {source}: {} {m}", code.unwrap_or_else(|| format!("HTTP {status}"))))
                }
                DownloadFailed::Write(e) => Failed(format!("writing {}: {e}", dest.display())),
            }
        })?;
    out.sync_all().map_err(io(format!("fsync {}", dest.display())))?;
    Ok((file_name, got))
}

/// Copies the replication log folders of `groups` this node keeps into
/// `partial/log/<group>/`.
fn replication_logs(
    server: &Server,
    token: Option<&str>,
    partial: &Path,
    name: &str,
    groups: &[String],
) -> Result<Vec<LogBackup>, Failed> {
    let mut logs = Vec::new();
    for group in groups {
        let call =
            Call { method: "GET", path: format!("/v1/backup/log/filenames?context={}", encode(group)), body: None };
        let answer =
            send(server, token, &call).map_err(|Unreachable(m)| Failed(format!("cannot reach the server: {m}")))?;
        if answer.status == 404 {
            continue; // not a member: no log of it here
        }
        if answer.status != 200 {
            let code = answer.error_code.unwrap_or_else(|| format!("HTTP {}", answer.status));
            return Err(Failed(format!("the log of {group}: {code}: {}", answer.body.trim())));
        }
        let listed: Vec<String> =
            serde_json::from_str(&answer.body).map_err(|e| Failed(format!("the log of {group}: {e}")))?;
        let dir = partial.join("log").join(group);
        fs::create_dir_all(&dir).map_err(io(dir.display()))?;
        let mut files = Vec::new();
        for source in &listed {
            let (file_name, got) = copy_listed(server, token, source, &dir)?;
            files.push(BackupFile {
                name: file_name,
                size: got.size,
                sha256: got.sha256,
                stored_in: name.to_owned(),
                closed: false,
            });
        }
        sync_dir(&dir)?;
        eprintln!("backup: the log of {group}: {} files", files.len());
        logs.push(LogBackup { group: group.clone(), files });
    }
    Ok(logs)
}

/// Asks the node for a copy of its cluster state and copies it into
/// `partial/control/`; `None` from a standalone node.
fn control_state(
    server: &Server,
    token: Option<&str>,
    partial: &Path,
    name: &str,
) -> Result<Option<BackupFile>, Failed> {
    let call = Call { method: "POST", path: "/v1/backup/createControlDbBackup".into(), body: None };
    let answer =
        send(server, token, &call).map_err(|Unreachable(m)| Failed(format!("cannot reach the server: {m}")))?;
    if answer.error_code.as_deref() == Some("AXONIQ-2301") {
        return Ok(None);
    }
    if answer.status != 200 {
        let code = answer.error_code.unwrap_or_else(|| format!("HTTP {}", answer.status));
        return Err(Failed(format!("the cluster state: {code}: {}", answer.body.trim())));
    }
    let source = answer.body.trim().to_owned();
    let dir = partial.join("control");
    fs::create_dir_all(&dir).map_err(io(dir.display()))?;
    let (file_name, got) = copy_listed(server, token, &source, &dir)?;
    sync_dir(&dir)?;
    eprintln!("backup: the cluster state: {file_name} ({} bytes)", got.size);
    Ok(Some(BackupFile {
        name: file_name,
        size: got.size,
        sha256: got.sha256,
        stored_in: name.to_owned(),
        closed: true,
    }))
}

fn sha256_of(path: &Path) -> Result<(u64, String), Failed> {
    let mut file = fs::File::open(path).map_err(io(path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io(path.display()))?;
        if n == 0 {
            return Ok((size, ranvier_wire::hex(&hasher.finalize())));
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
}

/// Checks every file of `manifest` (in `root`; its own files in `own` when
/// not yet renamed): present, of its size, of its SHA-256.
fn verify_files(root: &Path, manifest: &Manifest, own: Option<&Path>) -> Result<u64, Failed> {
    let mut checked = 0;
    let folder = |stored_in: &str| own.map_or_else(|| root.join(stored_in), Path::to_path_buf);
    if let Some(control) = &manifest.control {
        check(&folder(&control.stored_in).join("control").join(&control.name), control)?;
        checked += 1;
    }
    for log in &manifest.logs {
        for file in &log.files {
            check(&folder(&file.stored_in).join("log").join(&log.group).join(&file.name), file)?;
            checked += 1;
        }
    }
    for store in &manifest.stores {
        for file in &store.files {
            let path = match own {
                Some(own) if file.stored_in == manifest.name => {
                    own.join(&store.context).join(&store.kind).join(&file.name)
                }
                _ => file_path(root, store, file),
            };
            check(&path, file)?;
            checked += 1;
        }
    }
    Ok(checked)
}

/// Checks one file against its manifest entry.
fn check(path: &Path, file: &BackupFile) -> Result<(), Failed> {
    let (size, sha256) = sha256_of(path)?;
    if size != file.size || sha256 != file.sha256 {
        return Err(Failed(format!(
            "{} is damaged: {size} bytes with SHA-256 {sha256}, the manifest says {} bytes with {}",
            path.display(),
            file.size,
            file.sha256
        )));
    }
    Ok(())
}

/// `ranvierctl backup verify DIR/backup-…`.
pub fn verify(backup: &Path) -> Result<Manifest, Failed> {
    let text = fs::read_to_string(backup.join(MANIFEST))
        .map_err(|e| Failed(format!("{}: not a complete backup (no {MANIFEST}): {e}", backup.display())))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| Failed(format!("{}: {e}", backup.join(MANIFEST).display())))?;
    let root = backup.parent().unwrap_or(Path::new("."));
    let checked = verify_files(root, &manifest, None)?;
    eprintln!("backup: {} verified: {checked} files", manifest.name);
    Ok(manifest)
}

/// `ranvierctl backup prune DIR --keep N`: keeps the newest `keep`
/// complete backups and every backup they refer to (never the newest), and
/// removes what killed runs left.
pub fn prune(root: &Path, keep: usize) -> Result<Vec<String>, Failed> {
    let backups = complete_backups(root)?;
    let keep = keep.max(1);
    let kept: Vec<&Manifest> = backups.iter().rev().take(keep).collect();
    let mut needed: BTreeSet<String> = kept.iter().map(|m| m.name.clone()).collect();
    for manifest in &kept {
        for store in &manifest.stores {
            needed.extend(store.files.iter().map(|f| f.stored_in.clone()));
        }
    }
    let mut removed = Vec::new();
    for manifest in &backups {
        if !needed.contains(&manifest.name) {
            let dir = root.join(&manifest.name);
            fs::remove_dir_all(&dir).map_err(io(dir.display()))?;
            removed.push(manifest.name.clone());
        }
    }
    // A `.partial` folder older than the newest complete backup and than
    // an hour is what a killed run left.
    let newest = backups.last().map_or(0, |m| m.created_ms);
    let stale_before = now_ms().saturating_sub(STALE_PARTIAL_MS).min(newest);
    for entry in fs::read_dir(root).map_err(io(root.display()))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let started = name.strip_prefix("backup-").and_then(|n| n.strip_suffix(".partial"));
        if started.and_then(|ms| ms.parse::<u64>().ok()).is_some_and(|ms| ms < stale_before) {
            fs::remove_dir_all(entry.path()).map_err(io(entry.path().display()))?;
            removed.push(name);
        }
    }
    sync_dir(root)?;
    Ok(removed)
}

/// Age after which an unfinished backup folder counts as abandoned.
const STALE_PARTIAL_MS: u64 = 3_600_000;

/// Copies `from` to `dir/name`: beside it first, fsynced, then renamed.
fn put(from: &Path, dir: &Path, name: &str) -> Result<(), Failed> {
    let temporary = dir.join(format!("{name}.restoring"));
    fs::copy(from, &temporary).map_err(io(format!("copy {}", from.display())))?;
    fs::File::open(&temporary).and_then(|f| f.sync_all()).map_err(io(temporary.display()))?;
    fs::rename(&temporary, dir.join(name)).map_err(io(temporary.display()))
}

/// `ranvierctl restore --from DIR/backup-… --data-dir D [--log-dir L]`
/// (`--from DIR`: the newest complete backup in it): checks the backup,
/// then puts each store's files into `D/<context>/` (events and snapshots
/// share a folder, as the node keeps them by default). A folder that holds
/// segment files already is left alone: a restore never overwrites.
pub fn restore(from: &Path, data_dir: &Path, log_dir: Option<&Path>) -> Result<u64, Failed> {
    let newest;
    let backup = if from.join(MANIFEST).exists() {
        from
    } else {
        // A folder of backups: the newest complete one.
        let Some(manifest) = complete_backups(from)?.pop() else {
            return Err(Failed(format!("{} holds no complete backup", from.display())));
        };
        eprintln!("restore: the newest complete backup in {} is {}", from.display(), manifest.name);
        newest = from.join(&manifest.name);
        &newest
    };
    let manifest = verify(backup)?;
    let root = backup.parent().unwrap_or(Path::new("."));
    if let Some(log_dir) = log_dir {
        for log in &manifest.logs {
            let dir = log_dir.join(&log.group);
            if fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
                return Err(Failed(format!("{} is not empty: restore into an empty folder", dir.display())));
            }
        }
    }
    for context in manifest.stores.iter().map(|s| &s.context).collect::<BTreeSet<_>>() {
        let dir = data_dir.join(context);
        let occupied = fs::read_dir(&dir).map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(".events") || name.ends_with(".snapshots")
            })
        });
        if occupied.unwrap_or(false) {
            return Err(Failed(format!("{} holds segment files already: restore into an empty folder", dir.display())));
        }
    }
    let mut restored = 0;
    for store in &manifest.stores {
        let dir = data_dir.join(&store.context);
        fs::create_dir_all(&dir).map_err(io(dir.display()))?;
        for file in &store.files {
            put(&file_path(root, store, file), &dir, &file.name)?;
            restored += 1;
        }
        sync_dir(&dir)?;
    }
    sync_dir(data_dir)?;
    if let Some(log_dir) = log_dir {
        for log in &manifest.logs {
            let dir = log_dir.join(&log.group);
            fs::create_dir_all(&dir).map_err(io(dir.display()))?;
            for file in &log.files {
                let from = root.join(&file.stored_in).join("log").join(&log.group).join(&file.name);
                put(&from, &dir, &file.name)?;
                restored += 1;
            }
            sync_dir(&dir)?;
        }
        sync_dir(log_dir)?;
    }
    eprintln!("restore: {} files of {} into {}", restored, manifest.name, data_dir.display());
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::missing;

    #[test]
    fn a_node_must_store_every_context_asked_for_or_something_when_none_is() {
        let stored = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(missing(&[], &stored(&["default"])), None);
        assert_eq!(missing(&[], &[]), Some("stores no context".to_owned()));
        assert_eq!(missing(&stored(&["shop"]), &stored(&["default", "shop"])), None);
        assert_eq!(
            missing(&stored(&["shop", "ledger", "default"]), &stored(&["default"])),
            Some("does not store shop, ledger".to_owned())
        );
    }
}
