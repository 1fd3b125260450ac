//! Residency under a memory budget: loading one more model unloads idle ones until it fits, and
//! a model larger than the whole budget is refused with a message naming the setting.

use hearth_app::client;
use hearth_catalog::ImportMode;
use hearth_config::{Config, Sources};
use hearth_testkit::test_model;
use serde_json::{Value, json};

/// A server whose catalog holds the test model under two names, with `budget` as the memory
/// budget.
fn serve(budget: &str) -> Option<(hearth_app::Background, tempfile::TempDir)> {
    let model = test_model()?;
    let home = tempfile::tempdir().unwrap();
    let config = Config::load(&Sources {
        hearth_home: Some(home.path().to_owned()),
        env: vec![("HEARTH__MODELS__MEMORY_BUDGET".into(), budget.into())],
        ..Sources::default()
    })
    .unwrap();
    let catalog = hearth_app::open_catalog(&config).unwrap();
    for name in ["first:q4", "second:q4"] {
        catalog.import(&model, name, ImportMode::Adopt).unwrap();
    }
    Some((hearth_app::Background::start(config).unwrap(), home))
}

fn load(addr: std::net::SocketAddr, model: &str) -> Result<(), client::ClientError> {
    let body = json!({"model": model, "prompt": "", "stream": false}).to_string();
    client::request(addr, "POST", "/api/generate", Some(&body))?.text()?;
    Ok(())
}

fn loaded(addr: std::net::SocketAddr) -> Vec<String> {
    let text = client::request(addr, "GET", "/api/ps", None)
        .unwrap()
        .text()
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut names: Vec<String> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn loading_past_the_budget_unloads_the_idle_model() {
    // Room for one copy of the ~98 MB model (with its repacked weights), not two.
    let Some((server, _home)) = serve("190MB") else {
        return;
    };
    load(server.addr, "first:q4").unwrap();
    assert_eq!(loaded(server.addr), ["first:q4"]);
    load(server.addr, "second:q4").unwrap();
    assert_eq!(loaded(server.addr), ["second:q4"]);
    server.shutdown().unwrap();
}

#[test]
fn a_model_larger_than_the_budget_is_refused() {
    let Some((server, _home)) = serve("50MB") else {
        return;
    };
    let err = load(server.addr, "first:q4").unwrap_err().to_string();
    assert!(
        err.contains("400") && err.contains("models.memory_budget"),
        "{err}"
    );
    assert!(loaded(server.addr).is_empty());
    server.shutdown().unwrap();
}

#[test]
fn without_a_budget_both_stay() {
    let Some((server, _home)) = serve("0") else {
        return;
    };
    load(server.addr, "first:q4").unwrap();
    load(server.addr, "second:q4").unwrap();
    assert_eq!(loaded(server.addr), ["first:q4", "second:q4"]);
    server.shutdown().unwrap();
}
