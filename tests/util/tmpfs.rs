//! A small tmpfs mounted for one test, so that a disk really fills up (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a few MiB mounted on a temporary directory; unmounted when dropped.
pub struct Tmpfs {
    // Declared first: unmounted before the directory under it is removed.
    mount: Mounted,
    _dir: tempfile::TempDir,
}

struct Mounted(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB. Panics (never skips) when it cannot: the tests that
    /// need a full disk must run as root.
    pub fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        if !out.status.success() {
            // SAFETY: geteuid(2) has no preconditions and cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            panic!(
                "cannot mount a {mib} MiB tmpfs on {}{}: {}",
                dir.path().display(),
                if root {
                    ""
                } else {
                    " (this test must run as root, as CI does: it fills a real disk)"
                },
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Tmpfs {
            mount: Mounted(dir.path().to_path_buf()),
            _dir: dir,
        }
    }

    pub fn path(&self) -> &Path {
        &self.mount.0
    }

    /// Gives the tmpfs a new size, as freeing space on a disk would.
    pub fn resize(&self, mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "cannot resize the tmpfs to {mib} MiB");
    }

    /// Remounts the tmpfs read-only, as a read-only file system under a journal.
    pub fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "cannot remount the tmpfs read-only");
    }

    /// Bytes free on the tmpfs.
    pub fn free(&self) -> u64 {
        webspool::journal::space::free_space(self.path()).expect("statvfs")
    }

    /// Fills what is left of the tmpfs with a file (as another process would); returns
    /// its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0x5a; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // A page-sized remainder may still take a few bytes: take those too.
        while matches!(file.write(&chunk[..1]), Ok(1)) {}
        path
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a child still holds a file): detach it, so it goes once released.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}
