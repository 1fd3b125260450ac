//! File-system helpers: atomic writes, locked temporary work directories, per-name locks,
//! hashing copies.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::error::CatalogError;

const CHUNK: usize = 1 << 20;
/// Progress is reported at most once per this many bytes (and at the end).
const REPORT_EVERY: u64 = 1 << 20;

pub(crate) fn mtime_ns(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn create_dir(path: &Path) -> Result<(), CatalogError> {
    fs::create_dir_all(path).map_err(CatalogError::io("cannot create directory", path))
}

/// Flush a directory's entries (so a rename survives a crash). A no-op where unsupported.
pub(crate) fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(path) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Write `bytes` to `dest` atomically: a temp file in `tmp_dir`, fsync, rename, fsync the directory.
pub(crate) fn atomic_write(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    let tmp = tmp_dir.join(format!("write-{}", unique_suffix()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(CatalogError::io("cannot create", &tmp))?;
        f.write_all(bytes)
            .map_err(CatalogError::io("cannot write", &tmp))?;
        f.sync_all()
            .map_err(CatalogError::io("cannot sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, dest).map_err(CatalogError::io("cannot rename into place", dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent);
    }
    Ok(())
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}-{n}", std::process::id())
}

/// Open (creating) `path` and take an exclusive lock on it. `on_wait` runs once if another
/// holder makes us wait.
pub(crate) fn lock_file(path: &Path, on_wait: &dyn Fn()) -> Result<File, CatalogError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(CatalogError::io("cannot open lock file", path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => {
            on_wait();
            f.lock().map_err(CatalogError::io("cannot lock", path))?;
            Ok(f)
        }
        Err(TryLockError::Error(e)) => Err(CatalogError::io("cannot lock", path)(e)),
    }
}

/// Like [`lock_file`] but never waits: `Ok(None)` when someone else holds it.
pub(crate) fn try_lock_file(path: &Path) -> Result<Option<File>, CatalogError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(CatalogError::io("cannot open lock file", path))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(CatalogError::io("cannot lock", path)(e)),
    }
}

/// In-process exclusive set of keys (a pull of one name at a time per process).
#[derive(Default)]
pub(crate) struct KeyLocks {
    held: Mutex<HashSet<String>>,
    freed: Condvar,
}

pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
}

impl KeyLocks {
    pub(crate) fn lock(&self, key: &str, on_wait: &dyn Fn()) -> KeyGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut waited = false;
        while held.contains(key) {
            if !waited {
                waited = true;
                on_wait();
            }
            held = self
                .freed
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        held.insert(key.to_owned());
        KeyGuard {
            locks: self,
            key: key.to_owned(),
        }
    }

    pub(crate) fn try_lock(&self, key: &str) -> Option<KeyGuard<'_>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if !held.insert(key.to_owned()) {
            return None;
        }
        Some(KeyGuard {
            locks: self,
            key: key.to_owned(),
        })
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut held = self
            .locks
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.remove(&self.key);
        self.locks.freed.notify_all();
    }
}

/// A private directory under `models/tmp/`, guarded by a held lock file `<dir>.lock` beside it
/// so that [`clean_tmp`] in another process never removes work in progress. Removed on drop.
pub(crate) struct WorkDir {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl WorkDir {
    pub(crate) fn new(tmp_root: &Path, label: &str) -> Result<Self, CatalogError> {
        for _ in 0..16 {
            let base = format!("{label}-{}", unique_suffix());
            let lock_path = tmp_root.join(format!("{base}.lock"));
            let f = match OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&lock_path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CatalogError::io("cannot create", &lock_path)(e)),
            };
            f.lock()
                .map_err(CatalogError::io("cannot lock", &lock_path))?;
            // A concurrent `clean_tmp` may have unlinked the file between create and lock.
            if !same_file(&f, &lock_path) {
                continue;
            }
            let dir = tmp_root.join(&base);
            fs::create_dir(&dir).map_err(CatalogError::io("cannot create directory", &dir))?;
            return Ok(Self {
                dir,
                lock_path,
                _lock: f,
            });
        }
        Err(CatalogError::Io {
            action: "cannot create a temporary directory in",
            path: tmp_root.to_owned(),
            source: std::io::Error::other("too many collisions"),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_f: &File, path: &Path) -> bool {
    path.exists()
}

/// Remove leftovers of interrupted work: every `X.lock` nobody holds (with its `X/`), stray
/// files, and directories whose lock file is gone.
pub(crate) fn clean_tmp(tmp_root: &Path) -> Result<(), CatalogError> {
    let rd = fs::read_dir(tmp_root).map_err(CatalogError::io("cannot read directory", tmp_root))?;
    for entry in rd.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let Some(base) = name.strip_suffix(".lock") {
            if let Ok(Some(_held)) = try_lock_file(&path) {
                let _ = fs::remove_dir_all(tmp_root.join(base));
                let _ = fs::remove_file(&path);
            }
        } else if is_dir {
            if !tmp_root.join(format!("{name}.lock")).exists() {
                let _ = fs::remove_dir_all(&path);
            }
        } else if name.starts_with("write-") {
            // An atomic write interrupted before its rename; only ours are named like this and
            // they are short-lived, so leave ones that might belong to a live process alone.
            let pid_alive = name
                .strip_prefix("write-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(process_alive);
            if !pid_alive {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Progress sink: `(bytes done so far)`.
pub(crate) type OnBytes<'a> = &'a dyn Fn(u64);

/// Copy `reader` into `writer`, hashing with sha256; stops with an error past `limit` bytes.
/// Reports progress about once per MiB and once at the end.
/// Returns (lowercase hex digest, bytes copied).
pub(crate) fn copy_hashing(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    limit: u64,
    on_bytes: OnBytes<'_>,
) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let mut reported = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        done += n as u64;
        if done > limit {
            return Err(std::io::Error::other(format!(
                "more than the expected {limit} bytes"
            )));
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        writer.write_all(chunk)?;
        if done - reported >= REPORT_EVERY {
            reported = done;
            on_bytes(done);
        }
    }
    if reported != done || done == 0 {
        on_bytes(done);
    }
    Ok((hex(&hasher.finalize()), done))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
