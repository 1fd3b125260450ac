//! `hearth serve` on a free port: it prints where it listens, answers, is seen by `hearth ps`
//! and `hearth run`, and stops on SIGTERM.

use std::net::SocketAddr;
use std::process::Command;

use crate::model::model_in;
use crate::{Env, Expect, LIMIT, Running, http_get, test_model};

/// The address in "Hearth X is running at http://ADDR/ (…)".
fn running_at(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("is running at http://")?.1;
    rest.split('/').next()?.parse().ok()
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let env = Env::new();
    let model = test_model("the generation part of serve_answers_and_stops_on_sigterm");
    if let Some(m) = &model {
        let file = model_in(&env, m).display().to_string();
        env.check(&["import", &file, "--name", "test:q4"], Expect::Ok(&[]));
    }
    // The flag wins over the environment's (dead) address; nothing is pulled.
    let mut cmd = env.cmd(&["serve", "--listen", "127.0.0.1:0"]);
    cmd.env("HEARTH__MODELS__PULL_DEFAULT_ON_SERVE", "false")
        .env("HEARTH__LOG__LEVEL", "warn");
    let mut server = Running::spawn(cmd);
    let addr = server.wait_for(running_at);
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    assert_eq!(http_get(addr, "/healthz").0, 200);
    let (status, body) = http_get(addr, "/api/version");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let version = env.check(&["version"], Expect::Ok(&[])).stdout;
    assert_eq!(
        Some(version.trim()),
        v["version"]
            .as_str()
            .map(|v| format!("hearth {v}"))
            .as_deref(),
        "/api/version disagrees with `hearth version`"
    );

    let listen = addr.to_string();
    env.check(
        &["ps", "--listen", &listen],
        Expect::Ok(&["No models loaded."]),
    );
    if model.is_some() {
        // `run` finds the server at --listen and generates through it.
        let out = env.check(
            &[
                "run",
                "test:q4",
                "What is the capital of France?",
                "--temperature",
                "0",
                "--max-tokens",
                "16",
                "--listen",
                &listen,
            ],
            Expect::Ok(&["Paris"]),
        );
        assert!(!out.stderr.contains("pulling"), "{}", out.stderr);
        let out = env.check(&["ps", "--listen", &listen], Expect::Ok(&["NAME", "UNTIL"]));
        assert!(
            out.stdout.lines().any(|l| l.starts_with("test:q4 ")),
            "`hearth ps` does not show the loaded model:\n{}",
            out.stdout
        );
        env.check(
            &["run", "nope:1b", "hi", "--listen", &listen],
            Expect::Fails(&["nope:1b"]),
        );
    }

    // SIGTERM: a graceful stop, exit code 0, within the bound.
    let pid = server.child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = server.child.wait_bounded(LIMIT);
    let seen = server.seen.join("\n");
    let Some(status) = status else {
        panic!("serve did not stop within {LIMIT:?} of SIGTERM; it printed:\n{seen}");
    };
    assert!(
        status.success(),
        "serve exited with {status} after SIGTERM:\n{seen}"
    );
    env.check(
        &["ps", "--listen", &listen],
        Expect::Fails(&["hearth serve"]),
    );
}

#[test]
fn serve_refuses_a_busy_address() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = env.cmd(&["serve", "--listen", &addr]);
    cmd.env("HEARTH__MODELS__PULL_DEFAULT_ON_SERVE", "false");
    env.check_cmd(
        cmd,
        None,
        Expect::Fails(&["cannot listen on", &addr, "--listen"]),
    );
}
