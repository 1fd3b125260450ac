//! Commands that need no model: version, help, configuration, and the errors a user meets.

use crate::{Env, Expect};

#[test]
fn version_matches_the_package() {
    let env = Env::new();
    let want = format!("hearth {}", env!("CARGO_PKG_VERSION"));
    let out = env.check(&["version"], Expect::Ok(&[&want]));
    assert_eq!(out.stdout.trim(), want);
    env.check(&["--version"], Expect::Ok(&[&want]));
}

#[test]
fn help_lists_every_command() {
    let env = Env::new();
    let out = env.check(&["--help"], Expect::Ok(&["Usage: hearth", "--listen"]));
    for command in [
        "serve", "run", "pull", "import", "list", "show", "rm", "ps", "config", "bench", "version",
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`hearth --help` does not list `{command}`:\n{}",
            out.stdout
        );
    }
    env.check(
        &["run", "--help"],
        Expect::Ok(&["--temperature", "--max-tokens"]),
    );
    env.check(&["frobnicate"], Expect::Fails(&["frobnicate"]));
}

#[test]
fn config_shows_layers_and_later_ones_win() {
    let env = Env::new();
    // Defaults alone (the environment's dead-address override aside).
    let out = env.check(
        &["config"],
        Expect::Ok(&["# layers read: defaults", "[server]"]),
    );
    let home = env.home().display().to_string();
    assert!(
        out.stdout.contains(&format!("home = {home:?}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("env HEARTH__SERVER__LISTEN"),
        "{}",
        out.stdout
    );

    // user file < --config file < environment < flag
    let user = env.path().join("config/hearth/config.toml");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(
        &user,
        "[models]\nmax_loaded = 3\n[server]\nlisten = \"127.0.0.1:1001\"\n",
    )
    .unwrap();
    let explicit = env.path().join("mine.toml");
    std::fs::write(&explicit, "[models]\nmax_loaded = 4\n").unwrap();

    let mut cmd = env.cmd(&["config"]);
    cmd.env_remove("HEARTH__SERVER__LISTEN");
    let out = env.check_cmd(
        cmd,
        None,
        Expect::Ok(&["listen = \"127.0.0.1:1001\"", "max_loaded = 3"]),
    );
    assert!(
        out.stdout.contains(&user.display().to_string()),
        "{}",
        out.stdout
    );

    let mut cmd = env.cmd(&["config", "--config", "mine.toml"]);
    cmd.env("HEARTH__SERVER__LISTEN", "127.0.0.1:1002");
    env.check_cmd(
        cmd,
        None,
        Expect::Ok(&[
            "mine.toml → env HEARTH__SERVER__LISTEN",
            "listen = \"127.0.0.1:1002\"",
            "max_loaded = 4",
        ]),
    );

    let mut cmd = env.cmd(&["config", "--listen", "127.0.0.1:1003"]);
    cmd.env("HEARTH__SERVER__LISTEN", "127.0.0.1:1002");
    env.check_cmd(cmd, None, Expect::Ok(&["listen = \"127.0.0.1:1003\""]));

    let mut cmd = env.cmd(&["config"]);
    cmd.env("HEARTH__MODELS__MAX_LOADED", "7");
    env.check_cmd(cmd, None, Expect::Ok(&["max_loaded = 7"]));
}

#[test]
fn config_errors_name_the_problem() {
    let env = Env::new();
    std::fs::write(
        env.path().join("typo.toml"),
        "[server]\nlisten = \"127.0.0.1:9\"\nlistne = \"127.0.0.1:10\"\n",
    )
    .unwrap();
    env.check(
        &["config", "--config", "typo.toml"],
        Expect::Fails(&["`listne`"]),
    );
    std::fs::write(env.path().join("section.toml"), "[sever]\nlisten = 1\n").unwrap();
    env.check(
        &["config", "--config", "section.toml"],
        Expect::Fails(&["`sever`"]),
    );
    // An unknown key fails every command, not just `config`.
    env.check(
        &["list", "--config", "typo.toml"],
        Expect::Fails(&["`listne`"]),
    );
    env.check(
        &["config", "--config", "absent.toml"],
        Expect::Fails(&["absent.toml"]),
    );
    std::fs::write(env.path().join("broken.toml"), "[server\n").unwrap();
    env.check(
        &["config", "--config", "broken.toml"],
        Expect::Fails(&["broken.toml"]),
    );
    env.check(
        &["config", "--listen", "nowhere"],
        Expect::Fails(&["server.listen", "`nowhere` is not HOST:PORT"]),
    );
    let mut cmd = env.cmd(&["config"]);
    cmd.env("HEARTH__MODELS__KEEP_ALIVE", "5 fortnights");
    env.check_cmd(cmd, None, Expect::Fails(&["models.keep_alive"]));
}

#[test]
fn errors_a_user_meets_without_models() {
    let env = Env::new();
    env.check(
        &["list"],
        Expect::Ok(&["No models yet", "hearth pull smollm2:135m"]),
    );
    for args in [
        &["show", "nope:1b"][..],
        &["show", "--path", "nope:1b"],
        &["rm", "nope:1b"],
    ] {
        env.check(
            args,
            Expect::Fails(&["`nope:1b` not found", "hearth pull nope:1b"]),
        );
    }
    for args in [
        &["show", "../x"][..],
        &["rm", "../x"],
        &["pull", "../x"],
        &["run", "../x", "hi"],
    ] {
        let out = env.check(args, Expect::Fails(&["invalid model name `../x`"]));
        assert!(!out.stderr.contains("pulling"), "{}", out.stderr);
    }
    env.check(
        &["ps"],
        Expect::Fails(&["cannot reach Hearth", "hearth serve"]),
    );
    // Not in the registry: refused before anything is downloaded.
    env.check(
        &["pull", "nosuchmodel:1b"],
        Expect::Fails(&["`nosuchmodel:1b` not found", "registry", "smollm2:135m"]),
    );
    env.check(&["list"], Expect::Ok(&["No models yet"]));
}

#[test]
fn import_refuses_what_is_not_a_gguf() {
    let env = Env::new();
    std::fs::write(env.path().join("notes.txt"), "just some text\n").unwrap();
    env.check(
        &["import", "notes.txt", "--name", "notes:1"],
        Expect::Fails(&["notes.txt", "not a GGUF file"]),
    );
    env.check(
        &["import", "missing.gguf", "--name", "missing:1"],
        Expect::Fails(&["missing.gguf", "No such file"]),
    );
    std::fs::create_dir(env.path().join("folder.gguf")).unwrap();
    env.check(
        &["import", "folder.gguf", "--name", "folder:1"],
        Expect::Fails(&["not a regular file"]),
    );
    // Just the magic and a version: the header stops short.
    std::fs::write(env.path().join("short.gguf"), b"GGUF\x03\x00\x00\x00").unwrap();
    env.check(
        &["import", "short.gguf", "--name", "short:1"],
        Expect::Fails(&["short.gguf", "not usable"]),
    );
    env.check(
        &["import", "notes.txt", "--name", "hf.co/a/b:c.gguf"],
        Expect::Fails(&["local name"]),
    );
    let out = env.check(&["list"], Expect::Ok(&["No models yet"]));
    assert!(!out.stdout.contains("notes"), "{}", out.stdout);
}

#[test]
fn the_database_setting_and_flag() {
    let env = Env::new();
    // The default: hearth.db in the data folder.
    let home = env.home().display().to_string();
    env.check(
        &["config"],
        Expect::Ok(&[
            "[database]",
            &format!("url = \"sqlite://{home}/hearth.db\""),
        ]),
    );
    // The flag reaches the setting; the password is not printed.
    let out = env.check(
        &[
            "config",
            "--database",
            "postgres://hearth:s3cret@db.test:5432/hearth",
        ],
        Expect::Ok(&["url = \"postgres://hearth:…@db.test:5432/hearth\""]),
    );
    assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);
    env.check(
        &["config", "--database", "mysql://db.test/hearth"],
        Expect::Fails(&["database.url", "not a database URL"]),
    );
    // `serve` opens the database before anything else: a refused connection stops it at once,
    // naming the setting and not the password.
    let out = env.check(
        &[
            "serve",
            "--database",
            "postgres://hearth:s3cret@127.0.0.1:1/hearth",
        ],
        Expect::Fails(&["cannot open the database", "127.0.0.1:1", "database.url"]),
    );
    assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
}
