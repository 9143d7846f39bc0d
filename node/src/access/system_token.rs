//! The system token (`axoniq.axonserver.accesscontrol.systemtokenfile`): a
//! token that allows everything, made by the node at its first start and
//! kept in a file only its user can read (mode 0600), so that `ranvierctl`
//! on the node's machine can administer it without a token on the command
//! line. Later starts read the same file; a file that others may read, or
//! that holds no usable token, stops the start.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::applications::{TokenError, check_given_token, new_token};

/// Why the system token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SystemTokenError {
    /// Reading or writing the file failed.
    #[error("system token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error("system token file {path} may be read by others (mode {mode:o}): run chmod 600 on it")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds something that is not a token.
    #[error("system token file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No token could be made.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The token in `path`, made and written there (0600, fsync'd with its
/// directory) when the file does not exist yet.
pub fn load_or_create(path: &Path) -> Result<String, SystemTokenError> {
    let io = |source| SystemTokenError::Io { path: path.to_owned(), source };
    match fs::metadata(path) {
        Ok(metadata) => {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SystemTokenError::Exposed { path: path.to_owned(), mode });
            }
            let text = fs::read_to_string(path).map_err(io)?;
            let token = text.trim().to_owned();
            check_given_token(&token).map_err(|reason| SystemTokenError::Invalid { path: path.to_owned(), reason })?;
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = new_token()?;
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            };
            let durable = |failed: crate::durable::Failed| io(failed.into());
            crate::durable::create_dir_all(&dir).map_err(durable)?;
            crate::durable::replace_private_file(path, format!("{token}\n").as_bytes()).map_err(durable)?;
            crate::durable::sync_dir(&dir).map_err(durable)?;
            Ok(token)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_token_is_made_once_readable_by_its_owner_only_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("security").join(".token");
        let token = load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), token);
        assert_eq!(load_or_create(&path).unwrap(), token, "a restart keeps the token");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(".token")], "no temp file stays");
    }

    #[test]
    fn a_file_others_can_read_or_without_a_token_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_or_create(&path).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        fs::write(&path, "short\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load_or_create(&path), Err(SystemTokenError::Invalid { .. })));
    }
}
