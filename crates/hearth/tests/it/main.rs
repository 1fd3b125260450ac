//! The `hearth` executable driven from outside, as a user would (ripgrep style): every test runs
//! the real binary in a fresh temporary folder that is its `HEARTH_HOME`, `HOME` and
//! `XDG_CONFIG_HOME`, so no user configuration or model leaks in and nothing leaks out.
//! Every wait is bounded and every child process is killed when a test fails.
//!
//! Tests that need the real model find it through `HEARTH_TEST_MODEL` and say they are skipped
//! when it is unset. `tidy` checks the architecture invariants of the whole workspace.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly, with the command and its output"
)]

mod accounts;
mod cli;
mod model;
mod serve;
mod tidy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The longest any one command may take before the test gives up on it (and kills it). Generous:
/// the machine may be busy; this bounds a hang, it does not measure speed.
pub const LIMIT: Duration = Duration::from_secs(120);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hearth")
}

/// An address where nothing listens, so `run` never finds someone else's server and `ps` meets a
/// refused connection.
fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// What a command did.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// What a command should do: succeed printing every string on stdout, or fail (exit code ≠ 0)
/// with an `error:` line on stderr containing every string.
pub enum Expect<'a> {
    Ok(&'a [&'a str]),
    Fails(&'a [&'a str]),
}

/// A fresh temporary world for the binary.
pub struct Env {
    dir: tempfile::TempDir,
    /// `HEARTH__SERVER__LISTEN` for every command: a dead address unless a test says otherwise.
    listen: String,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            listen: dead_addr().to_string(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.path().join("hearth-home")
    }

    /// `hearth ARGS` in this world: the working folder is the temp folder, and the environment
    /// holds no `HEARTH*`, `XDG_*` or `RUST_LOG` variable of the caller.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("HEARTH") || k.starts_with("XDG_") || k == "RUST_LOG" {
                c.env_remove(&*k);
            }
        }
        c.args(args)
            .current_dir(self.path())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("HEARTH_HOME", self.home())
            .env("HEARTH__SERVER__LISTEN", &self.listen)
            .env("NO_COLOR", "1");
        c
    }

    /// Run `hearth ARGS` and check it against `expect`; the output, for further checks.
    pub fn check(&self, args: &[&str], expect: Expect<'_>) -> Out {
        self.check_cmd(self.cmd(args), None, expect)
    }

    /// As [`Env::check`], with `stdin` piped in.
    pub fn check_stdin(&self, args: &[&str], stdin: &str, expect: Expect<'_>) -> Out {
        self.check_cmd(self.cmd(args), Some(stdin), expect)
    }

    pub fn check_cmd(&self, cmd: Command, stdin: Option<&str>, expect: Expect<'_>) -> Out {
        let what = format!("{cmd:?}");
        let out = output_bounded(cmd, stdin);
        let show = || {
            format!(
                "{what}\nexit: {}\n--- stdout\n{}\n--- stderr\n{}",
                out.status, out.stdout, out.stderr
            )
        };
        match expect {
            Expect::Ok(wants) => {
                assert!(out.status.success(), "expected success: {}", show());
                for w in wants {
                    assert!(out.stdout.contains(w), "stdout lacks {w:?}: {}", show());
                }
            }
            Expect::Fails(wants) => {
                assert!(
                    !out.status.success() && out.status.code().is_some(),
                    "expected a failure exit code: {}",
                    show()
                );
                assert!(
                    out.stderr.contains("error: "),
                    "no `error:` line: {}",
                    show()
                );
                for w in wants {
                    assert!(out.stderr.contains(w), "stderr lacks {w:?}: {}", show());
                }
            }
        }
        out
    }
}

/// Kills and reaps its child when dropped (a failing test leaves no process behind).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl ChildGuard {
    /// Wait for the child to exit, at most `limit`.
    pub fn wait_bounded(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn read_all(r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = BufReader::new(r).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Run `cmd` to its end, at most [`LIMIT`]; a command still running then is killed and the test
/// fails with what it printed so far.
fn output_bounded(mut cmd: Command, stdin: Option<&str>) -> Out {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().unwrap());
    if let (Some(text), Some(mut w)) = (stdin, child.0.stdin.take()) {
        let text = text.to_owned();
        thread::spawn(move || {
            let _ = w.write_all(text.as_bytes());
        });
    }
    let stdout = read_all(child.0.stdout.take().unwrap());
    let stderr = read_all(child.0.stderr.take().unwrap());
    let status = child.wait_bounded(LIMIT);
    drop(child);
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!(
            "{what} did not finish within {LIMIT:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    };
    Out {
        status,
        stdout,
        stderr,
    }
}

/// A long-running `hearth` (serve) whose stderr lines arrive on a channel.
pub struct Running {
    pub child: ChildGuard,
    pub lines: mpsc::Receiver<String>,
    /// Every stderr line seen so far, for failure messages.
    pub seen: Vec<String>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().unwrap());
        let err = child.0.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line for which `pick` says something, waiting at most [`LIMIT`].
    pub fn wait_for<T>(&mut self, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = pick(&line);
                    self.seen.push(line);
                    if let Some(t) = found {
                        return t;
                    }
                }
                Err(e) => panic!(
                    "no expected line on stderr ({e}); it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

/// A plain HTTP/1.1 GET; the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The model under `HEARTH_TEST_MODEL`, or `None` after printing that `test` is skipped.
pub fn test_model(test: &str) -> Option<PathBuf> {
    match std::env::var_os("HEARTH_TEST_MODEL") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            println!("skipped {test}: HEARTH_TEST_MODEL is not set");
            None
        }
    }
}

/// The golden data folder of the default model, made outside Hearth.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/smollm2-135m")
}
