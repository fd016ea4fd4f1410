//! The socket file: made owner-only from its first moment, and reachable whatever the
//! length of the journal's path.
//!
//! A Unix socket's address holds at most 107 bytes of path. A longer journal path is
//! reached through `/proc/self/fd/N/`, N a handle on its directory opened for the
//! purpose, which the kernel follows as it would the path; `chdir` would do too, but
//! changes the working directory of every thread. Without `/proc`, the error says the
//! path is too long.
//!
//! `bind(2)` creates the socket file with the process's umask, which is shared by all
//! threads, so it is not changed: the socket is bound in a new directory of mode 0700
//! inside the journal, set to 0600 there, then renamed into place over whatever a
//! killed holder left (the caller holds sled's lock, so no live holder is listening).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The socket's name in the journal directory.
pub const SOCKET_FILE: &str = "webspool.sock";
/// Longest path a Unix socket address takes (`sun_path` is 108 bytes with its NUL).
const MAX_ADDRESS: usize = 107;

/// The socket of the journal in `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_FILE)
}

/// A path to `path` short enough for a socket address, and the directory handle that
/// keeps it valid.
struct Address {
    path: PathBuf,
    _dir: Option<std::fs::File>,
}

fn address(path: &Path) -> std::io::Result<Address> {
    if path.as_os_str().len() <= MAX_ADDRESS {
        return Ok(Address {
            path: path.to_path_buf(),
            _dir: None,
        });
    }
    let too_long = || {
        std::io::Error::other(format!(
            "its path is longer than the {MAX_ADDRESS} bytes a socket address holds"
        ))
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(too_long());
    };
    let dir = std::fs::File::open(parent)?;
    let short = {
        use std::os::fd::AsRawFd;
        Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name)
    };
    if short.as_os_str().len() > MAX_ADDRESS || !Path::new("/proc/self/fd").is_dir() {
        return Err(too_long());
    }
    Ok(Address {
        path: short,
        _dir: Some(dir),
    })
}

/// Binds the journal's socket in `dir`, mode 0600, replacing a stale one.
pub fn bind(dir: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let staging = dir.join(format!(".webspool-sock-{}", std::process::id()));
    // Left by a killed process that had this pid: nothing listens there.
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let bound = bind_in(&staging, dir);
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

fn bind_in(staging: &Path, dir: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let inside = staging.join(SOCKET_FILE);
    let listener = std::os::unix::net::UnixListener::bind(&address(&inside)?.path)?;
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&inside, socket_path(dir))?;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

/// Connects to the socket of the journal in `dir`.
pub async fn connect(dir: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let address = address(&socket_path(dir))?;
    tokio::net::UnixStream::connect(&address.path).await
}

/// This process's effective user id.
pub fn our_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
