use super::*;

fn sources() -> Sources {
    Sources {
        user_home: Some("/srv/someone".into()),
        ..Sources::default()
    }
}

#[test]
fn defaults_are_valid_and_documented_values() {
    let c = Config::load(&sources()).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:11435");
    assert_eq!(c.home, PathBuf::from("/srv/someone/.local/share/hearth"));
    assert_eq!(c.models.default, "smollm2:135m");
    assert_eq!(c.models.keep_alive, Some(Duration::from_secs(300)));
    assert_eq!(c.server.max_choices, 8);
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("user.toml");
    std::fs::write(
        &user,
        "[server]\nlisten = \"127.0.0.1:1\"\n[engine]\nthreads = 3\n",
    )
    .unwrap();
    let explicit = dir.path().join("explicit.toml");
    std::fs::write(&explicit, "[server]\nlisten = \"127.0.0.1:2\"\n").unwrap();
    let mut s = sources();
    s.optional_files = vec![user, dir.path().join("missing.toml")];
    s.explicit_file = Some(explicit);
    s.hearth_home = Some("/data/hearth".into());
    s.env = vec![
        ("HEARTH__MODELS__KEEP_ALIVE".into(), "30s".into()),
        ("HEARTH__ENGINE__PREFILL_CHUNK".into(), "64".into()),
        ("OTHER".into(), "x".into()),
    ];
    s.flags = vec![("server.listen".into(), "0.0.0.0:3".into())];
    let c = Config::load(&s).unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:3");
    assert_eq!(c.engine.threads, 3);
    assert_eq!(c.engine.prefill_chunk, 64);
    assert_eq!(c.models.keep_alive, Some(Duration::from_secs(30)));
    assert_eq!(c.home, PathBuf::from("/data/hearth"));
}

#[test]
fn bad_values_name_the_key() {
    let check = |env: (&str, &str), needle: &str| {
        let mut s = sources();
        s.env = vec![(env.0.into(), env.1.into())];
        let err = Config::load(&s).unwrap_err().to_string();
        assert!(err.contains(needle), "{env:?}: {err}");
    };
    check(("HEARTH__SERVER__LISTEN", "nonsense"), "server.listen");
    check(("HEARTH__SERVER__LISTENN", "1"), "listenn");
    check(("HEARTH__MODELS__KEEP_ALIVE", "5 weeks"), "keep_alive");
    check(("HEARTH__ENGINE__THREADS", "-2"), "threads");
    check(("HEARTH__MODELS__MAX_LOADED", "0"), "max_loaded");
    check(("HEARTH__SERVER__MAX_CHOICES", "0"), "server.max_choices");
    check(("HEARTH__SERVER__MAX_CHOICES", "129"), "server.max_choices");
}

#[test]
fn missing_explicit_file_is_an_error() {
    let mut s = sources();
    s.explicit_file = Some("/nonexistent/hearth.toml".into());
    assert!(matches!(Config::load(&s), Err(ConfigError::Read { .. })));
}

#[test]
fn durations() {
    let cases = [
        ("5m", Some(300.0)),
        ("30s", Some(30.0)),
        ("250ms", Some(0.25)),
        ("0", Some(0.0)),
        ("-1", None),
        ("2", Some(2.0)),
        ("1h", Some(3600.0)),
    ];
    for (text, want) in cases {
        assert_eq!(
            parse_duration(text).unwrap().map(|d| d.as_secs_f64()),
            want,
            "{text}"
        );
    }
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("5d").is_err());
}

#[test]
fn memory_budgets() {
    let cases = [
        ("auto", Ok(MemoryBudget::Auto)),
        ("AUTO", Ok(MemoryBudget::Auto)),
        ("0", Ok(MemoryBudget::Unlimited)),
        ("800MB", Ok(MemoryBudget::Bytes(800_000_000))),
        ("6 GB", Ok(MemoryBudget::Bytes(6_000_000_000))),
        ("1GiB", Ok(MemoryBudget::Bytes(1 << 30))),
        ("12345", Ok(MemoryBudget::Bytes(12_345))),
    ];
    for (text, want) in cases {
        assert_eq!(parse_memory_budget(text), want, "{text}");
    }
    for bad in ["lots", "5 parsecs", "-3GB", "1e30"] {
        assert!(parse_memory_budget(bad).is_err(), "{bad}");
    }
    let mut s = sources();
    s.env = vec![("HEARTH__MODELS__MEMORY_BUDGET".into(), "2GB".into())];
    assert_eq!(
        Config::load(&s).unwrap().models.memory_budget,
        MemoryBudget::Bytes(2_000_000_000)
    );
}

#[test]
fn import_dirs_and_blob_limit() {
    let c = Config::load(&sources()).unwrap();
    assert!(c.models.import_dirs.is_empty(), "none by default");
    assert_eq!(c.models.max_blob_bytes, 64 << 30);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[models]\nimport_dirs = [\"/srv/models\", \"/mnt/gguf\"]\nmax_blob_bytes = 1000\n",
    )
    .unwrap();
    let mut s = sources();
    s.explicit_file = Some(file.clone());
    let c = Config::load(&s).unwrap();
    let want: Vec<PathBuf> = vec!["/srv/models".into(), "/mnt/gguf".into()];
    assert_eq!(c.models.import_dirs, want);
    assert_eq!(c.models.max_blob_bytes, 1000);
    let mut s = sources();
    s.env = vec![("HEARTH__MODELS__IMPORT_DIRS".into(), "/a::/b".into())];
    let want: Vec<PathBuf> = vec!["/a".into(), "/b".into()];
    assert_eq!(Config::load(&s).unwrap().models.import_dirs, want);
    for bad in ["import_dirs = [\"relative/dir\"]", "max_blob_bytes = 0"] {
        std::fs::write(&file, format!("[models]\n{bad}\n")).unwrap();
        let mut s = sources();
        s.explicit_file = Some(file.clone());
        assert!(Config::load(&s).is_err(), "{bad}");
    }
}

#[test]
fn the_database_defaults_to_sqlite_in_home_and_takes_urls() {
    let check = |setting: Option<&str>, expect: Result<&str, &str>| {
        let mut s = sources();
        s.hearth_home = Some("/data/hearth".into());
        if let Some(v) = setting {
            s.flags = vec![("database.url".into(), v.into())];
        }
        match (Config::load(&s), expect) {
            (Ok(c), Ok(url)) => assert_eq!(c.database.url, url, "{setting:?}"),
            (Err(e), Err(needle)) => {
                let e = e.to_string();
                assert!(
                    e.contains("database.url") && e.contains(needle),
                    "{setting:?}: {e}"
                );
            }
            (got, want) => panic!("{setting:?}: got {got:?}, want {want:?}"),
        }
    };
    check(None, Ok("sqlite:///data/hearth/hearth.db"));
    check(Some(""), Ok("sqlite:///data/hearth/hearth.db"));
    check(Some("sqlite:///srv/h.db"), Ok("sqlite:///srv/h.db"));
    check(
        Some("postgres://h:pw@db:5432/h"),
        Ok("postgres://h:pw@db:5432/h"),
    );
    check(Some("postgresql://db/h"), Ok("postgresql://db/h"));
    // The password is not repeated in the error.
    check(Some("mysql://h:pw@db/h"), Err("mysql://h:…@db/h"));
    check(Some("/just/a/path.db"), Err("not a database URL"));
}

#[test]
fn database_passwords_stay_out_of_logs() {
    let c = DatabaseConfig {
        url: "postgres://hearth:s3cret@db.example.test:5432/hearth".into(),
    };
    assert_eq!(
        c.redacted_url(),
        "postgres://hearth:…@db.example.test:5432/hearth"
    );
    assert!(!format!("{c:?}").contains("s3cret"));
    let plain = DatabaseConfig {
        url: "sqlite:///data/hearth.db".into(),
    };
    assert_eq!(plain.redacted_url(), "sqlite:///data/hearth.db");
}

fn auth_with(env: &[(&str, &str)]) -> Result<AuthConfig, ConfigError> {
    let mut s = sources();
    s.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load(&s).map(|c| c.auth)
}

/// `[auth] mode`: auto is required beyond loopback only.
#[test]
fn auth_mode_follows_the_listen_address() {
    let check = |mode: &str, listen: &str, required: bool| {
        let a = auth_with(&[("HEARTH__AUTH__MODE", mode)]).unwrap();
        assert_eq!(
            a.mode.required(listen.parse().unwrap()),
            required,
            "{mode} {listen}"
        );
    };
    check("auto", "127.0.0.1:1", false);
    check("auto", "[::1]:1", false);
    check("auto", "0.0.0.0:1", true);
    check("auto", "192.168.1.5:1", true);
    check("required", "127.0.0.1:1", true);
    check("open", "0.0.0.0:1", false);
    let e = auth_with(&[("HEARTH__AUTH__MODE", "sometimes")]).unwrap_err();
    assert!(e.to_string().contains("auto, required or open"), "{e}");
}

/// The first admin comes from HEARTH_ADMIN_USER and HEARTH_ADMIN_PASSWORD, both or neither.
#[test]
fn bootstrap_admin_from_the_environment() {
    let a = auth_with(&[]).unwrap();
    assert_eq!(a.bootstrap_admin, None);
    assert_eq!(a.signup, Signup::Pending);
    assert_eq!(a.oidc, None);
    let a = auth_with(&[
        ("HEARTH_ADMIN_USER", "root"),
        ("HEARTH_ADMIN_PASSWORD", "pw"),
    ])
    .unwrap();
    assert_eq!(a.bootstrap_admin, Some(("root".into(), "pw".into())));
    let e = auth_with(&[("HEARTH_ADMIN_USER", "root")]).unwrap_err();
    assert!(e.to_string().contains("set both"), "{e}");
    let e = auth_with(&[("HEARTH__AUTH__OIDC__ISSUER", "https://id.example")]).unwrap_err();
    assert!(e.to_string().contains("client_id"), "{e}");
}
