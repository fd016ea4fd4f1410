//! What the user granted to each origin: the origins of the URLs the user gave, which
//! are the only ones the user's `--header`s are sent to, and the credentials written in
//! those URLs (`https://user:pass@host/`), which are sent to their origin as Basic auth.
//!
//! Origins are kept in the `given_origins` tree (key: the origin's ASCII serialization,
//! `scheme://host[:port]`; value: empty), so the set lives on disk however many hosts
//! a URL list names. Credentials never enter sled, the page records or MySQL (stored
//! URLs carry no userinfo): they are kept in `credentials`, a file of the journal
//! directory that only its owner may read (mode 0600, set again on every open), one
//! line per grant, `origin userinfo` with the userinfo percent-encoded as it was
//! written; a later line for an origin replaces an earlier one. Its lines are held in
//! memory, one per origin with credentials. Each grant is written and fsynced before the
//! URL it came with is added to the journal, so a URL that survives a crash still has
//! its credentials after it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use url::Url;

use super::JournalError;
use crate::urls::Userinfo;

/// The file that holds URL credentials, in the journal directory.
pub const CREDENTIALS_FILE: &str = "credentials";

pub struct Grants {
    origins: sled::Tree,
    /// Origin -> userinfo, as read from and appended to the credentials file.
    credentials: RwLock<HashMap<String, String>>,
    path: PathBuf,
    /// Serializes appends, so lines never interleave.
    append: Mutex<()>,
    /// The origin granted last: a URL list usually names one origin many times in a
    /// row, and this spares those URLs a read of `given_origins`.
    last: Mutex<String>,
}

fn file_error(path: &Path, e: std::io::Error) -> JournalError {
    if super::space::is_full(&e) {
        return JournalError::NoSpace {
            writing: path.display().to_string(),
        };
    }
    JournalError::Credentials(format!("credentials file {}: {e}", path.display()))
}

impl Grants {
    pub(super) fn open(db: &sled::Db, dir: &Path) -> Result<Grants, JournalError> {
        let path = dir.join(CREDENTIALS_FILE);
        let mut credentials = HashMap::new();
        match File::open(&path) {
            Ok(file) => {
                owner_only(&file).map_err(|e| file_error(&path, e))?;
                for (n, line) in BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(|e| file_error(&path, e))?;
                    // Never shown: a damaged line may still hold a password.
                    let (origin, userinfo) =
                        line.split_once(' ').ok_or_else(|| JournalError::Damaged {
                            what: format!(
                                "{} line {} is not `origin userinfo`",
                                path.display(),
                                n + 1
                            ),
                        })?;
                    credentials.insert(origin.to_string(), userinfo.to_string());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(&path, e)),
        }
        Ok(Grants {
            origins: db.open_tree("given_origins")?,
            credentials: RwLock::new(credentials),
            path,
            append: Mutex::new(()),
            last: Mutex::new(String::new()),
        })
    }

    /// Records that the user gave `url` (without userinfo), with the `userinfo` that was
    /// written in it. Durable for the credentials when it returns; the origin is
    /// durable with the journal's next flush, which comes before the URL's own.
    pub fn grant(&self, url: &Url, userinfo: Option<&Userinfo>) -> Result<(), JournalError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.grant_in(url, userinfo).map_err(|e| e.in_dir(dir))
    }

    fn grant_in(&self, url: &Url, userinfo: Option<&Userinfo>) -> Result<(), JournalError> {
        let origin = url.origin().ascii_serialization();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if *last != origin {
            if !self.origins.contains_key(&origin)? {
                self.origins.insert(origin.as_bytes(), &[])?;
            }
            last.clone_from(&origin);
        }
        drop(last);
        let Some(userinfo) = userinfo else {
            return Ok(());
        };
        let userinfo = userinfo.as_str();
        if self.userinfo(&origin).as_deref() == Some(userinfo) {
            return Ok(());
        }
        let _serial = self.append.lock().unwrap_or_else(|e| e.into_inner());
        self.append_line(&format!("{origin} {userinfo}\n"))
            .map_err(|e| file_error(&self.path, e))?;
        self.credentials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(origin, userinfo.to_string());
        Ok(())
    }

    fn append_line(&self, line: &str) -> std::io::Result<()> {
        let created = !self.path.exists();
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path)?;
        owner_only(&file)?;
        let before = file.metadata()?.len();
        if let Err(e) = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
        {
            // Half a line (a full disk) would be read back as a grant, or as damage.
            let _ = file.set_len(before);
            return Err(e);
        }
        if created {
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }

    /// Whether the user gave a URL of this origin (`Url::origin().ascii_serialization()`).
    pub fn is_given(&self, origin: &str) -> Result<bool, JournalError> {
        Ok(self.origins.contains_key(origin)?)
    }

    /// Whether any credentials are kept, so callers can skip computing origins.
    pub fn has_credentials(&self) -> bool {
        !self
            .credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The userinfo given for this origin, percent-encoded as it was written.
    pub fn userinfo(&self, origin: &str) -> Option<String> {
        self.credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .cloned()
    }
}

/// Makes the file readable and writable by its owner only.
fn owner_only(file: &File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_reopen_in_an_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let grants = Grants::open(&db, dir.path()).unwrap();
        let a = Url::parse("https://a.example:8443/x").unwrap();
        let b = Url::parse("http://b.example/").unwrap();
        let info = |s: &str| Userinfo::new(s.to_string());
        grants.grant(&a, Some(&info("bob:s%40cret"))).unwrap();
        grants.grant(&a, Some(&info("bob:n3w"))).unwrap();
        grants.grant(&b, None).unwrap();
        assert!(grants.is_given("https://a.example:8443").unwrap());
        assert!(grants.is_given("http://b.example").unwrap());
        assert!(!grants.is_given("http://c.example").unwrap());
        drop(grants);
        let grants = Grants::open(&db, dir.path()).unwrap();
        assert_eq!(
            grants.userinfo("https://a.example:8443").as_deref(),
            Some("bob:n3w")
        );
        assert_eq!(grants.userinfo("http://b.example"), None);
        assert!(grants.has_credentials());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(CREDENTIALS_FILE);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            drop(Grants::open(&db, dir.path()).unwrap());
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a loosened file is tightened on open");
        }
    }
}
