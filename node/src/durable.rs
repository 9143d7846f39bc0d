//! Whole-file replacement on disk, shared by the event store and the
//! replication log: small files (segment headers, side indexes, hints,
//! votes, snapshot metadata) are written to a temp file beside the target,
//! fsync'd and renamed over it, so a crash leaves the old file or the new
//! one, never a mix. The rename is durable once the directory is fsync'd
//! ([`sync_dir`]); a caller writing several files into one directory syncs
//! it once after the last. New folders (a context's, a group's log) are
//! made with [`create_dir_all`], which syncs each new folder's parent, so a
//! power cut cannot lose a folder whose files were already synced.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The step of a durable write that failed, and on which path.
#[derive(Debug)]
pub struct Failed {
    /// `write`, `fsync` or `rename`.
    pub op: &'static str,
    /// The file (or directory) the step acted on.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

impl From<Failed> for io::Error {
    fn from(Failed { op, path, source }: Failed) -> Self {
        io::Error::new(source.kind(), format!("{op} {}: {source}", path.display()))
    }
}

fn failed(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Failed {
    let path = path.to_owned();
    move |source| Failed { op, path, source }
}

/// Replaces `path` with `bytes` (temp file, fsync, rename); the directory
/// is not synced.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), Failed> {
    replace_with_mode(path, bytes, None)
}

/// [`replace_file`] for a secret: the file is readable and writable by its
/// owner only (mode 0600) from the moment it exists.
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), Failed> {
    replace_with_mode(path, bytes, Some(0o600))
}

fn replace_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), Failed> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut temp_name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    temp_name.push(".temp");
    let temp = path.with_file_name(temp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if let Some(mode) = mode {
        options.mode(mode);
    }
    let mut file = options.open(&temp).map_err(failed("write", &temp))?;
    if let Some(mode) = mode {
        // An earlier temp file may have been made with other bits.
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(failed("write", &temp))?;
    }
    file.write_all(bytes).map_err(failed("write", &temp))?;
    file.sync_all().map_err(failed("fsync", &temp))?;
    fs::rename(&temp, path).map_err(failed("rename", &temp))
}

/// Makes the entries of `dir` (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), Failed> {
    #[cfg(test)]
    SYNCED_DIRS.with(|synced| synced.borrow_mut().push(dir.to_path_buf()));
    File::open(dir).and_then(|d| d.sync_all()).map_err(failed("fsync", dir))
}

/// Creates `dir` and its missing parents, then syncs the parent of each
/// folder it created (top down), so the new entries survive a power cut.
pub fn create_dir_all(dir: &Path) -> Result<(), Failed> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && fs::metadata(at).is_err() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    fs::create_dir_all(dir).map_err(failed("create", dir))?;
    for created in missing.iter().rev() {
        match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// The directories this thread synced, for tests of who syncs what.
    pub(crate) static SYNCED_DIRS: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The directories this thread synced since the last call (tests only).
#[cfg(test)]
pub(crate) fn take_synced_dirs() -> Vec<PathBuf> {
    SYNCED_DIRS.with(|synced| std::mem::take(&mut *synced.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_no_temp_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vote.json");
        replace_file(&path, b"old").unwrap();
        replace_file(&path, b"new").unwrap();
        sync_dir(dir.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vote.json")]);
    }

    #[test]
    fn new_folders_are_made_durable_in_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("log").join("orders");
        take_synced_dirs();
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        assert_eq!(take_synced_dirs(), vec![dir.path().to_path_buf(), dir.path().join("log")]);
        // An existing folder is left as it is.
        create_dir_all(&deep).unwrap();
        assert!(take_synced_dirs().is_empty());
    }

    #[test]
    fn a_failed_step_names_itself_and_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("hint.json");
        let error = replace_file(&missing, b"x").unwrap_err();
        assert_eq!(error.op, "write");
        assert_eq!(error.path, dir.path().join("no-such-dir").join("hint.json.temp"));
        assert_eq!(error.source.kind(), io::ErrorKind::NotFound);
    }
}
