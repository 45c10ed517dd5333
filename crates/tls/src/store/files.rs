//! The store's file writes: private directories, keys created 0600 (never `chmod`ed
//! afterwards), and every write to a temporary file renamed or linked into place, so a crash
//! leaves the old file or the new one, never half of one.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

pub(super) fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(Error::io("inspect", path, err)),
    }
}

pub(super) fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|err| Error::io("read", path, err))
}

/// A private key readable by group or others is refused: someone may have copied it.
pub(super) fn check_key_mode(path: &Path) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Damaged {
                path: path.to_owned(),
                problem: "the private key file is missing".into(),
                fix: "restore it, or delete the matching certificate and issue a new one".into(),
            })
        }
        Err(err) => return Err(Error::io("inspect", path, err)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Damaged {
            path: path.to_owned(),
            problem: format!("the private key is readable by other users (mode {mode:04o}, must be 0600)"),
            fix: format!(
                "run `chmod 600 {}`; if other users may have copied it, also replace it (for the CA: move the state directory aside and run `protolab certs init`)",
                path.display()
            ),
        });
    }
    Ok(())
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| Error::io("create directory", dir, err))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a fresh temporary file next to `path` with `mode` set at creation, and
/// flushes it to disk. Returns the temporary path.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(err) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", tmp, err));
    }
    Ok(tmp)
}

/// fsyncs the directory so the rename itself survives a crash.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Atomically replaces `path` with `bytes` (temp file + rename).
pub(super) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    if let Err(err) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", path, err));
    }
    sync_dir(path);
    Ok(())
}

/// Atomically creates `path` with `bytes`; fails with `AlreadyExists` if it is there (a hard link
/// cannot overwrite, unlike rename).
pub(super) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(|err| Error::io("create", path, err))?;
    sync_dir(path);
    Ok(())
}

/// Takes `dir`'s exclusive lock (flock on the directory itself, so no lock file is left in
/// the store), waiting at most `wait`. The lock goes with the returned handle, and with the
/// process if it dies holding it.
pub(super) fn lock_dir(dir: &Path, wait: std::time::Duration) -> Result<fs::File> {
    let handle = fs::File::open(dir).map_err(|err| Error::io("open", dir, err))?;
    let started = std::time::Instant::now();
    loop {
        match handle.try_lock() {
            Ok(()) => return Ok(handle),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::io(
                    "lock",
                    dir,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "another protolab process has held it for {} s while creating the CA; stop it, or try again",
                            wait.as_secs()
                        ),
                    ),
                ))
            }
            Err(fs::TryLockError::Error(err)) => return Err(Error::io("lock", dir, err)),
        }
    }
}
