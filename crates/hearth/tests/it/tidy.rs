//! Tidy: the architecture invariants of /work/shared/design.md, written as absences and checked on
//! every `crates/*/Cargo.toml` and every `.rs` file under `crates/`. A violation names the crate
//! (or file and line) and the rule it breaks.
//!
//! The checks are pure functions over a [`Tree`] (manifests and sources in memory), so the tests
//! below also show that every rule fails on a tree that breaks it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml::{Table, Value};

/// Crates at the bottom: no HTTP, JSON wire, storage or async runtime (directly or through another
/// Hearth crate).
const LOW: &[&str] = &[
    "hearth-models",
    "hearth-engine",
    "hearth-gguf",
    "hearth-tokenizer",
    "hearth-template",
    "hearth-auth",
];
const LOW_FORBIDDEN: &[&str] = &[
    "axum",
    "tower",
    "tower-http",
    "hyper",
    "http",
    "tokio",
    "serde_json",
    "sqlx",
    "rusqlite",
    "reqwest",
    "ureq",
];
/// JSON as a file format, not a wire format: hearth-template renders chat messages (JSON values),
/// hearth-models reads `config.json` and safetensors headers, hearth-tokenizer `tokenizer.json`.
/// hearth-auth parses OIDC discovery documents and token responses (bytes the caller fetched).
/// A crate that reaches an allowed pair through one of these is allowed too.
const LOW_ALLOWED: &[(&str, &str)] = &[
    ("hearth-auth", "serde_json"),
    ("hearth-template", "serde_json"),
    ("hearth-models", "serde_json"),
    ("hearth-tokenizer", "serde_json"),
];

const HTTP: &[&str] = &["axum", "tower", "tower-http", "hyper", "http"];
const HTTP_CRATES: &[&str] = &["hearth-server", "hearth-app", "hearth-web"];

/// The crates that may speak SQL: the store backends (hearth-store itself holds only traits).
const DATABASE_CRATES: &[&str] = &["hearth-store-sqlite", "hearth-store-postgres"];
const DATABASE: &[&str] = &[
    "sqlx",
    "rusqlite",
    "postgres",
    "tokio-postgres",
    "libsqlite3-sys",
];

/// Where `unsafe` may appear (a file, or a folder ending in `/`).
const UNSAFE_ALLOWED: &[&str] = &[
    "crates/hearth-models/src/kernels/",
    "crates/hearth-gguf/src/file.rs",
];
/// Crates whose root need not forbid unsafe code.
const UNSAFE_CRATES: &[&str] = &["hearth-models", "hearth-gguf"];
/// Crates that carry the product version instead of 0.0.0.
const VERSIONED: &[&str] = &["hearth", "hearth-app"];
const ANYHOW_CRATES: &[&str] = &["hearth", "xtask"];
const MAIN_RS_MAX_LINES: usize = 150;

/// One crate: its folder name, manifest and sources (`path` relative to the repository root).
pub struct Crate {
    pub name: String,
    pub manifest: Table,
    pub files: Vec<(String, String)>,
}

pub struct Tree {
    pub root_manifest: Table,
    pub crates: Vec<Crate>,
}

impl Tree {
    /// Read the workspace at `root`.
    pub fn read(root: &Path) -> Self {
        let parse = |p: &Path| -> Table {
            let text =
                std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            text.parse()
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let root_manifest = parse(&root.join("Cargo.toml"));
        let mut crates = Vec::new();
        let mut dirs: Vec<_> = std::fs::read_dir(root.join("crates"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let mut files = Vec::new();
            collect_rs(root, &dir, &mut files);
            files.sort();
            crates.push(Crate {
                name,
                manifest: parse(&dir.join("Cargo.toml")),
                files,
            });
        }
        Self {
            root_manifest,
            crates,
        }
    }
}

fn collect_rs(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let file_name = e.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') || file_name == "target" {
            continue;
        }
        if p.is_dir() {
            collect_rs(root, &p, out);
        } else if file_name.ends_with(".rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            out.push((rel, text));
        }
    }
}

/// Which dependency tables count.
#[derive(Clone, Copy, PartialEq)]
enum Kinds {
    /// `[dependencies]` and `[build-dependencies]` (also under `[target.*]`): what ships.
    Shipped,
    /// Those and `[dev-dependencies]`.
    All,
}

/// The package names a manifest depends on (a renamed dependency counts by its `package`).
fn deps(manifest: &Table, kinds: Kinds) -> BTreeSet<String> {
    let mut tables: Vec<&Table> = Vec::new();
    let mut sections = vec!["dependencies", "build-dependencies"];
    if kinds == Kinds::All {
        sections.push("dev-dependencies");
    }
    for s in &sections {
        if let Some(Value::Table(t)) = manifest.get(*s) {
            tables.push(t);
        }
    }
    if let Some(Value::Table(targets)) = manifest.get("target") {
        for target in targets.values() {
            for s in &sections {
                if let Some(Value::Table(t)) = target.get(*s) {
                    tables.push(t);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    for t in tables {
        for (key, spec) in t {
            let package = spec.get("package").and_then(Value::as_str).unwrap_or(key);
            out.insert(package.to_owned());
        }
    }
    out
}

fn package<'a>(c: &'a Crate, key: &str) -> Option<&'a Value> {
    c.manifest.get("package")?.get(key)
}

fn is_workspace_inherited(v: Option<&Value>) -> bool {
    v.and_then(|v| v.get("workspace")).and_then(Value::as_bool) == Some(true)
}

/// Every violation in `tree`, one line each.
pub fn violations(tree: &Tree) -> Vec<String> {
    let mut v = Vec::new();
    let internal: BTreeMap<&str, &Crate> =
        tree.crates.iter().map(|c| (c.name.as_str(), c)).collect();
    let workspace_deps = tree
        .root_manifest
        .get("workspace")
        .and_then(|w| w.get("dependencies"));
    let workspace_publish = tree
        .root_manifest
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("publish"))
        .and_then(Value::as_bool);

    for c in &tree.crates {
        let name = c.name.as_str();
        let shipped = deps(&c.manifest, Kinds::Shipped);

        // Manifest conventions.
        if package(c, "name").and_then(Value::as_str) != Some(name) {
            v.push(format!(
                "crate `{name}`: the package name differs from its folder (rule: folder name = crate name)"
            ));
        }
        if !VERSIONED.contains(&name)
            && package(c, "version").and_then(Value::as_str) != Some("0.0.0")
        {
            v.push(format!(
                "crate `{name}`: version is not \"0.0.0\" (rule: internal crates are version 0.0.0)"
            ));
        }
        if !is_workspace_inherited(package(c, "publish")) || workspace_publish != Some(false) {
            v.push(format!(
                "crate `{name}`: publish is not false through the workspace (rule: `publish.workspace = true`, workspace publish = false)"
            ));
        }
        let lints_ok = c
            .manifest
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(Value::as_bool)
            == Some(true);
        if !lints_ok {
            v.push(format!(
                "crate `{name}`: no `[lints] workspace = true` (rule: every crate takes the workspace lints)"
            ));
        }
        let has_lib = c
            .files
            .iter()
            .any(|(p, _)| p == &format!("crates/{name}/src/lib.rs"));
        if has_lib {
            let listed = workspace_deps
                .and_then(|d| d.get(name))
                .and_then(|d| d.get("path"))
                .and_then(Value::as_str);
            if listed != Some(&format!("crates/{name}")) {
                v.push(format!(
                    "crate `{name}`: not listed as `{name} = {{ path = \"crates/{name}\" }}` in [workspace.dependencies] (rule: internal crates are listed once there)"
                ));
            }
        }

        // Dependency edges.
        if LOW.contains(&name) {
            for (dep, via) in reachable_external(name, &internal) {
                if LOW_FORBIDDEN.contains(&dep.as_str())
                    && !LOW_ALLOWED.contains(&(via.as_str(), dep.as_str()))
                {
                    let how = if via == name {
                        "directly".to_owned()
                    } else {
                        format!("through `{via}`")
                    };
                    v.push(format!(
                        "crate `{name}`: depends on `{dep}` {how} (rule: models, engine, gguf, tokenizer, template and auth depend on no HTTP, JSON-wire, storage or async-runtime crate)"
                    ));
                }
            }
        }
        if !HTTP_CRATES.contains(&name) {
            for dep in shipped.iter().filter(|d| HTTP.contains(&d.as_str())) {
                v.push(format!(
                    "crate `{name}`: depends on `{dep}` (rule: only hearth-server, hearth-app and hearth-web depend on axum/tower/http)"
                ));
            }
        }
        if !DATABASE_CRATES.contains(&name) {
            for dep in shipped.iter().filter(|d| DATABASE.contains(&d.as_str())) {
                v.push(format!(
                    "crate `{name}`: depends on `{dep}` (rule: only hearth-store-sqlite and hearth-store-postgres depend on a database driver)"
                ));
            }
        }
        if !ANYHOW_CRATES.contains(&name) && deps(&c.manifest, Kinds::All).contains("anyhow") {
            v.push(format!(
                "crate `{name}`: uses `anyhow` (rule: anyhow only in the binary and xtask; crates return their own error enum)"
            ));
        }

        // Sources.
        let mut crate_has_allowed_unsafe = false;
        for (path, text) in &c.files {
            let code = strip_comments_and_strings(text);
            let unsafe_lines = unsafe_lines(&code);
            if unsafe_lines.is_empty() {
                continue;
            }
            let allowed = UNSAFE_ALLOWED.iter().any(|a| {
                if a.ends_with('/') {
                    path.starts_with(a)
                } else {
                    path == a
                }
            }) || (is_test_file(path)
                && squeeze(&code).contains("#[expect(unsafe_code"));
            if !allowed {
                for line in &unsafe_lines {
                    v.push(format!(
                        "{path}:{line}: `unsafe` (rule: no unsafe outside the kernels of hearth-models and hearth-gguf's file.rs; tests only under #[expect(unsafe_code, reason)])"
                    ));
                }
                continue;
            }
            crate_has_allowed_unsafe |= path.contains("/src/");
            let lines: Vec<&str> = text.lines().collect();
            for line in unsafe_blocks(&code) {
                if !has_safety_comment(&lines, line) {
                    v.push(format!(
                        "{path}:{line}: `unsafe {{` without a `// SAFETY:` comment in the 3 lines above (rule: every unsafe block says why it is sound)"
                    ));
                }
            }
        }
        if !UNSAFE_CRATES.contains(&name) && !crate_has_allowed_unsafe {
            for root in ["lib.rs", "main.rs"] {
                let path = format!("crates/{name}/src/{root}");
                if let Some((_, text)) = c.files.iter().find(|(p, _)| *p == path) {
                    let code = squeeze(&strip_comments_and_strings(text));
                    if !code.contains("#![forbid(unsafe_code)]") {
                        v.push(format!(
                            "{path}: no `#![forbid(unsafe_code)]` (rule: crates without allowed unsafe forbid it at the root)"
                        ));
                    }
                }
            }
        }
    }

    if let Some(c) = internal.get("hearth") {
        let path = "crates/hearth/src/main.rs";
        match c.files.iter().find(|(p, _)| p == path) {
            Some((_, text)) if text.lines().count() > MAIN_RS_MAX_LINES => v.push(format!(
                "{path}: {} lines (rule: the binary stays under {MAIN_RS_MAX_LINES} lines; the work lives in hearth-app)",
                text.lines().count()
            )),
            Some(_) => {}
            None => v.push(format!("{path}: missing (rule: the binary is crate `hearth`)")),
        }
    }
    v
}

/// External crates `name` depends on when shipped, directly or through internal crates; each with
/// the internal crate whose manifest names it.
fn reachable_external(name: &str, internal: &BTreeMap<&str, &Crate>) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![name.to_owned()];
    let mut out = Vec::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        let Some(c) = internal.get(n.as_str()) else {
            continue;
        };
        for d in deps(&c.manifest, Kinds::Shipped) {
            if internal.contains_key(d.as_str()) {
                stack.push(d);
            } else {
                out.push((d, n.clone()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `code` without whitespace, to find attributes however they are wrapped.
fn squeeze(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

fn is_test_file(path: &str) -> bool {
    let mut parts = path.split('/');
    parts.next() == Some("crates") && parts.next().is_some() && parts.next() == Some("tests")
}

/// `text` with comments, string literals and char literals blanked out (newlines kept, so line
/// numbers stay), leaving only code tokens.
fn strip_comments_and_strings(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if !prev_ident && (c[i] == 'r' || (c[i] == 'b' && c.get(i + 1) == Some(&'r'))) && {
            let start = if c[i] == 'b' { i + 2 } else { i + 1 };
            let mut j = start;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            c.get(j) == Some(&'"')
        } {
            // Raw string: r#"…"#.
            let mut j = if c[i] == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while c[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            while j < c.len() {
                if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &c[i..j.min(c.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c[i] == '"' {
            blank(&mut out, c[i]);
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime or label: left as it is.
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len().min(i + 12)).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for &ch in &c[i..=e] {
                        blank(&mut out, ch);
                    }
                    i = e + 1;
                }
                None => {
                    out.push(c[i]);
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// 1-based line numbers of the word `unsafe`, and whether each is followed by `{`.
fn unsafe_tokens(code: &str) -> Vec<(usize, bool)> {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = code[from..].find("unsafe") {
        let at = from + k;
        let end = at + "unsafe".len();
        from = end;
        if (at > 0 && ident(bytes[at - 1])) || bytes.get(end).is_some_and(|&b| ident(b)) {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let block = code[end..].trim_start().starts_with('{');
        out.push((line, block));
    }
    out
}

fn unsafe_lines(code: &str) -> Vec<usize> {
    unsafe_tokens(code).into_iter().map(|(l, _)| l).collect()
}

fn unsafe_blocks(code: &str) -> Vec<usize> {
    unsafe_tokens(code)
        .into_iter()
        .filter(|&(_, block)| block)
        .map(|(l, _)| l)
        .collect()
}

/// A `// SAFETY:` comment in the 3 lines above line `line` (1-based), or anywhere in the run of
/// comment lines that ends just above it.
fn has_safety_comment(lines: &[&str], line: usize) -> bool {
    let idx = line - 1;
    let near = lines[idx.saturating_sub(3)..idx]
        .iter()
        .any(|l| l.contains("SAFETY:"));
    let block = lines[..idx]
        .iter()
        .rev()
        .take_while(|l| l.trim_start().starts_with("//"))
        .any(|l| l.contains("SAFETY:"));
    near || block
}

// --- tests ---------------------------------------------------------------------------------

#[test]
fn tree_keeps_the_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tree = Tree::read(&root);
    assert!(
        tree.crates.iter().any(|c| c.name == "hearth-models"),
        "read no crates under {}",
        root.display()
    );
    let v = violations(&tree);
    assert!(
        v.is_empty(),
        "architecture invariants broken:\n{}",
        v.join("\n")
    );
}

/// A small workspace that keeps every rule.
fn clean_tree() -> Tree {
    let root_manifest: Table = r#"
        [workspace]
        members = ["crates/*"]
        [workspace.package]
        version = "0.1.0"
        publish = false
        [workspace.dependencies]
        hearth-app = { path = "crates/hearth-app" }
        hearth-gguf = { path = "crates/hearth-gguf" }
        hearth-models = { path = "crates/hearth-models" }
        hearth-server = { path = "crates/hearth-server" }
        hearth-template = { path = "crates/hearth-template" }
        hearth-store-sqlite = { path = "crates/hearth-store-sqlite" }
    "#
    .parse()
    .unwrap();
    let manifest = |name: &str, version: &str, deps: &str| -> Table {
        format!(
            "[package]\nname = \"{name}\"\n{version}\npublish.workspace = true\n\
             [dependencies]\n{deps}\n[lints]\nworkspace = true\n"
        )
        .parse()
        .unwrap()
    };
    let lib = |name: &str, body: &str| (format!("crates/{name}/src/lib.rs"), body.to_owned());
    let forbid = "//! A crate.\n#![forbid(unsafe_code)]\npub fn f() {}\n";
    let v0 = "version = \"0.0.0\"";
    let vw = "version.workspace = true";
    let krate = |name: &str, m: Table, files: Vec<(String, String)>| Crate {
        name: name.to_owned(),
        manifest: m,
        files,
    };
    Tree {
        root_manifest,
        crates: vec![
            krate(
                "hearth",
                manifest("hearth", vw, "anyhow = \"1\"\nhearth-app.workspace = true"),
                vec![("crates/hearth/src/main.rs".into(), "#![forbid(unsafe_code)]\nfn main() {}\n".into())],
            ),
            krate(
                "hearth-app",
                manifest("hearth-app", vw, "axum.workspace = true\nhearth-server.workspace = true"),
                vec![lib("hearth-app", forbid)],
            ),
            krate(
                "hearth-server",
                manifest("hearth-server", v0, "axum.workspace = true\ntower-http = \"0.6\"\nserde_json = \"1\""),
                vec![lib("hearth-server", forbid)],
            ),
            krate(
                "hearth-models",
                manifest("hearth-models", v0, "hearth-gguf.workspace = true\nrayon = \"1\""),
                vec![
                    lib("hearth-models", "//! Models; kernels hold the `unsafe`.\npub mod kernels;\n"),
                    (
                        "crates/hearth-models/src/kernels/simd.rs".into(),
                        "pub fn f(x: &[f32]) -> f32 {\n    // SAFETY: the length was checked.\n    unsafe { *x.get_unchecked(0) }\n}\n\
                         const S: &str = \"unsafe { in a string }\";\nconst C: char = '\"';\n"
                            .into(),
                    ),
                ],
            ),
            krate(
                "hearth-gguf",
                manifest("hearth-gguf", v0, "memmap2 = \"0.9\""),
                vec![
                    lib("hearth-gguf", "pub mod file;\n"),
                    (
                        "crates/hearth-gguf/src/file.rs".into(),
                        "fn map() {\n    // SAFETY: read-only map;\n    // the catalog never writes in place;\n    // so pages never change;\n    // under us.\n    unsafe { map_it() }\n}\n".into(),
                    ),
                    (
                        "crates/hearth-gguf/tests/it/alloc.rs".into(),
                        "#[expect(\n    unsafe_code,\n    reason = \"a test allocator\"\n)]\n// SAFETY: forwards to System.\nunsafe impl A for B {}\n".into(),
                    ),
                ],
            ),
            krate(
                "hearth-template",
                {
                    let mut m = manifest("hearth-template", v0, "minijinja = \"2\"\nserde_json = { workspace = true, features = [\"preserve_order\"] }");
                    table(&mut m, &["dev-dependencies"]).insert("tokio".into(), value("\"1\""));
                    m
                },
                vec![lib("hearth-template", "/* unsafe in a comment */\n#![forbid(unsafe_code)]\nfn f<'a>(s: &'a str) -> &'a str { s }\n")],
            ),
            krate(
                "hearth-store-sqlite",
                manifest("hearth-store-sqlite", v0, "rusqlite = \"0.37\""),
                vec![lib("hearth-store-sqlite", forbid)],
            ),
        ],
    }
}

/// Apply `breaking` to the clean tree and expect a violation containing every string of `expect`.
fn check(breaking: impl FnOnce(&mut Tree), expect: &[&str]) {
    let mut tree = clean_tree();
    breaking(&mut tree);
    let v = violations(&tree);
    assert!(
        v.iter().any(|line| expect.iter().all(|e| line.contains(e))),
        "expected a violation with {expect:?}, got {v:#?}"
    );
}

/// The table at `path` under `t`, created when missing.
fn table<'a>(t: &'a mut Table, path: &[&str]) -> &'a mut Table {
    path.iter().fold(t, |t, key| {
        t.entry(*key)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .unwrap()
    })
}

fn value(spec: &str) -> Value {
    let mut t: Table = format!("v = {spec}").parse().unwrap();
    t.remove("v").unwrap()
}

fn krate<'a>(t: &'a mut Tree, name: &str) -> &'a mut Crate {
    t.crates.iter_mut().find(|c| c.name == name).unwrap()
}

fn add_dep(t: &mut Tree, name: &str, section: &str, dep: &str, spec: &str) {
    table(&mut krate(t, name).manifest, &[section]).insert(dep.to_owned(), value(spec));
}

fn set_file(t: &mut Tree, name: &str, path: &str, text: &str) {
    let c = krate(t, name);
    c.files.retain(|(p, _)| p != path);
    c.files.push((path.to_owned(), text.to_owned()));
}

#[test]
fn the_clean_tree_is_clean() {
    let v = violations(&clean_tree());
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn low_crates_take_no_http_json_storage_or_runtime() {
    for (krate_name, dep) in [
        ("hearth-models", "tokio"),
        ("hearth-gguf", "serde_json"),
        ("hearth-gguf", "ureq"),
        ("hearth-template", "axum"),
        ("hearth-template", "reqwest"),
        ("hearth-models", "sqlx"),
    ] {
        check(
            |t| add_dep(t, krate_name, "dependencies", dep, "\"1\""),
            &[
                &format!("crate `{krate_name}`"),
                &format!("`{dep}` directly"),
                "async-runtime",
            ],
        );
    }
    // Through another Hearth crate (gguf → models), and under a rename and a target table.
    check(
        |t| add_dep(t, "hearth-gguf", "dependencies", "http", "\"1\""),
        &["crate `hearth-models`", "`http` through `hearth-gguf`"],
    );
    check(
        |t| {
            add_dep(
                t,
                "hearth-models",
                "dependencies",
                "rt",
                "{ package = \"tokio\", version = \"1\" }",
            )
        },
        &["crate `hearth-models`", "`tokio`"],
    );
    check(
        |t| {
            let m = &mut krate(t, "hearth-models").manifest;
            table(m, &["target", "cfg(unix)", "dependencies"])
                .insert("hyper".into(), value("\"1\""));
        },
        &["crate `hearth-models`", "`hyper`"],
    );
}

#[test]
fn only_the_edge_speaks_http() {
    for dep in ["axum", "tower", "tower-http", "hyper", "http"] {
        check(
            |t| add_dep(t, "hearth-store-sqlite", "dependencies", dep, "\"1\""),
            &[
                "crate `hearth-store-sqlite`",
                &format!("`{dep}`"),
                "only hearth-server",
            ],
        );
    }
}

#[test]
fn only_stores_speak_sql() {
    for dep in ["sqlx", "rusqlite", "postgres"] {
        check(
            |t| add_dep(t, "hearth-app", "dependencies", dep, "\"1\""),
            &[
                "crate `hearth-app`",
                &format!("`{dep}`"),
                "hearth-store-sqlite and hearth-store-postgres",
            ],
        );
    }
    // The trait crate is not a backend.
    check(
        |t| {
            t.crates.push(Crate {
                name: "hearth-store".into(),
                manifest: "[package]\nname = \"hearth-store\"\nversion = \"0.0.0\"\npublish.workspace = true\n[dependencies]\nsqlx = \"0.8\"\n[lints]\nworkspace = true\n"
                    .parse()
                    .unwrap(),
                files: Vec::new(),
            })
        },
        &["crate `hearth-store`", "`sqlx`", "database driver"],
    );
}

#[test]
fn unsafe_stays_in_its_places() {
    // In an ordinary crate (the crate root forbids it, so only the token rule fires here).
    check(
        |t| {
            set_file(
                t,
                "hearth-server",
                "crates/hearth-server/src/x.rs",
                "fn f() {\n    unsafe { g() }\n}\n",
            )
        },
        &["crates/hearth-server/src/x.rs:2", "`unsafe`"],
    );
    check(
        |t| {
            set_file(
                t,
                "hearth-models",
                "crates/hearth-models/src/llama.rs",
                "unsafe fn f() {}\n",
            )
        },
        &["crates/hearth-models/src/llama.rs:1"],
    );
    // A test file without the expectation.
    check(
        |t| {
            set_file(
                t,
                "hearth-gguf",
                "crates/hearth-gguf/tests/it/alloc.rs",
                "// SAFETY: x\nunsafe impl A for B {}\n",
            )
        },
        &["crates/hearth-gguf/tests/it/alloc.rs:2"],
    );
    // An allowed block without its SAFETY line.
    check(
        |t| {
            set_file(
                t,
                "hearth-models",
                "crates/hearth-models/src/kernels/simd.rs",
                "// SAFETY: for the first block.\nfn f() { unsafe { a() } }\n\n\n\nfn g() {\n    unsafe { b() }\n}\n",
            )
        },
        &["crates/hearth-models/src/kernels/simd.rs:7", "SAFETY"],
    );
    check(
        |t| {
            set_file(
                t,
                "hearth-gguf",
                "crates/hearth-gguf/tests/it/alloc.rs",
                "#[expect(unsafe_code, reason = \"r\")]\n// SAFETY: forwards.\nunsafe impl A for B {\n    unsafe fn f() {\n        x();\n        unsafe { g() }\n    }\n}\n",
            )
        },
        &["crates/hearth-gguf/tests/it/alloc.rs:6", "SAFETY"],
    );
}

#[test]
fn crate_roots_forbid_unsafe() {
    check(
        |t| {
            set_file(
                t,
                "hearth-server",
                "crates/hearth-server/src/lib.rs",
                "//! #![forbid(unsafe_code)] in a comment\npub fn f() {}\n",
            )
        },
        &["crates/hearth-server/src/lib.rs", "forbid(unsafe_code)"],
    );
    check(
        |t| set_file(t, "hearth", "crates/hearth/src/main.rs", "fn main() {}\n"),
        &["crates/hearth/src/main.rs", "forbid(unsafe_code)"],
    );
}

#[test]
fn manifests_follow_the_conventions() {
    check(
        |t| {
            let p = table(&mut krate(t, "hearth-server").manifest, &["package"]);
            p.insert("version".into(), Value::String("0.1.0".into()));
        },
        &["crate `hearth-server`", "0.0.0"],
    );
    check(
        |t| {
            let p = table(&mut krate(t, "hearth-gguf").manifest, &["package"]);
            p.insert("publish".into(), Value::Boolean(false));
        },
        &["crate `hearth-gguf`", "publish"],
    );
    check(
        |t| {
            krate(t, "hearth-models").manifest.remove("lints");
        },
        &["crate `hearth-models`", "[lints] workspace = true"],
    );
    check(
        |t| {
            let p = table(&mut krate(t, "hearth-app").manifest, &["package"]);
            p.insert("name".into(), Value::String("hearth-application".into()));
        },
        &["crate `hearth-app`", "folder"],
    );
    check(
        |t| {
            table(&mut t.root_manifest, &["workspace", "dependencies"]).remove("hearth-gguf");
        },
        &["crate `hearth-gguf`", "[workspace.dependencies]"],
    );
    // Workspace publish must be false for the inherited value to mean anything; every crate
    // inherits it, so each is named.
    let mut tree = clean_tree();
    table(&mut tree.root_manifest, &["workspace", "package"])
        .insert("publish".into(), Value::Boolean(true));
    assert_eq!(violations(&tree).len(), tree.crates.len());
}

#[test]
fn anyhow_only_in_the_binary() {
    check(
        |t| add_dep(t, "hearth-server", "dependencies", "anyhow", "\"1\""),
        &["crate `hearth-server`", "anyhow"],
    );
    check(
        |t| add_dep(t, "hearth-gguf", "dev-dependencies", "anyhow", "\"1\""),
        &["crate `hearth-gguf`", "anyhow"],
    );
}

#[test]
fn the_binary_stays_small() {
    check(
        |t| {
            let body = format!(
                "#![forbid(unsafe_code)]\nfn main() {{}}\n{}",
                "// more\n".repeat(149)
            );
            set_file(t, "hearth", "crates/hearth/src/main.rs", &body);
        },
        &["crates/hearth/src/main.rs: 151 lines", "150"],
    );
}
