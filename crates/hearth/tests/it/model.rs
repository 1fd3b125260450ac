//! With the real model (`HEARTH_TEST_MODEL`): import, list, show, run (argument, stdin,
//! interactive), rm, and the import of a damaged copy.

use std::path::{Path, PathBuf};

use crate::{Env, Expect, golden_dir, test_model};

/// The model linked (or copied) into `env`'s folder, so adopting and removing it never touches
/// the caller's file.
pub fn model_in(env: &Env, model: &Path) -> PathBuf {
    let here = env.path().join("smollm2.gguf");
    if std::fs::hard_link(model, &here).is_err() {
        std::fs::copy(model, &here).unwrap();
    }
    here
}

/// The reference's greedy answer to "What is the capital of France?" (row 0 of greedy.jsonl,
/// a float64 forward pass made outside Hearth), up to the end-of-turn token; and the text before
/// its first near tie.
fn golden_answer() -> (String, String) {
    let path = golden_dir().join("greedy.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("golden data {}: {e}", path.display()));
    let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(
        row["prompt"]
            .as_str()
            .unwrap()
            .contains("What is the capital of France?"),
        "row 0 of {} is not the question this test asks",
        path.display()
    );
    let full = row["text"].as_str().unwrap();
    let answer = full.split("<|im_end|>").next().unwrap().to_owned();
    let safe = row["safe_prefix_text"].as_str().unwrap().to_owned();
    (answer, safe)
}

/// `line` is the reference's answer. Step 0 of that row is a near tie in the reference (top two
/// within 0.1 log-probability) and every later step is decisive, so: the output must start with
/// the safe prefix and name Paris; once it takes the reference's first word, it must be the whole
/// reference answer.
fn assert_golden(line: &str) {
    let (answer, safe) = golden_answer();
    let line = line.trim_end();
    assert!(
        line.starts_with(&safe),
        "{line:?} does not start with {safe:?}"
    );
    assert!(line.contains("Paris"), "{line:?} does not name Paris");
    let first_word = answer.split(' ').next().unwrap_or("");
    if line.starts_with(&format!("{first_word} ")) {
        assert_eq!(line, answer, "greedy answer differs from the reference");
    }
}

const QUESTION: &str = "What is the capital of France?";
const GREEDY: [&str; 4] = ["--temperature", "0", "--max-tokens", "16"];

fn run_args<'a>(model: &'a str, prompt: &'a str) -> Vec<&'a str> {
    let mut v = vec!["run", model, prompt];
    v.extend(GREEDY);
    v
}

#[test]
fn import_list_show_run_rm() {
    let Some(model) = test_model("import_list_show_run_rm") else {
        return;
    };
    let env = Env::new();
    let file = model_in(&env, &model);
    let file_arg = file.display().to_string();
    env.check(
        &["import", &file_arg, "--name", "test:q4"],
        Expect::Ok(&["imported test:q4", "used in place"]),
    );
    let out = env.check(&["list"], Expect::Ok(&["NAME", "test:q4"]));
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("test:q4"))
        .unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert!(cols.contains(&"135M"), "params column: {row:?}");
    assert!(cols.contains(&"Q4_1"), "quantization column: {row:?}");

    let out = env.check(&["show", "test:q4"], Expect::Ok(&["test:q4"]));
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("`show` has no {name}:\n{}", out.stdout))
            .to_owned()
    };
    assert_eq!(field("architecture"), "llama");
    assert_eq!(field("context length"), "8192");
    assert_eq!(field("parameters"), "135M");
    assert_eq!(field("quantization"), "Q4_1");
    env.check(
        &["show", "test:q4", "--verbose"],
        Expect::Ok(&["Metadata", "general.architecture", "llama.context_length"]),
    );
    let out = env.check(&["show", "--path", "test:q4"], Expect::Ok(&[]));
    assert_eq!(
        Path::new(out.stdout.trim()),
        std::fs::canonicalize(&file).unwrap()
    );

    // One prompt as an argument, then the same from stdin (its final newline is not part of it).
    let out = env.check(&run_args("test:q4", QUESTION), Expect::Ok(&["Paris"]));
    assert_golden(&out.stdout);
    let out = env.check_stdin(
        &run_args("test:q4", "-"),
        &format!("{QUESTION}\n"),
        Expect::Ok(&["Paris"]),
    );
    assert_golden(&out.stdout);
    env.check_stdin(&run_args("test:q4", "-"), "\n", Expect::Fails(&["stdin"]));

    // Replacing the name with the same file is fine; removing keeps the adopted file.
    env.check(
        &["import", &file_arg, "--name", "test:q4"],
        Expect::Ok(&["imported test:q4"]),
    );
    env.check(&["rm", "test:q4"], Expect::Ok(&["deleted test:q4"]));
    let out = env.check(&["list"], Expect::Ok(&["No models yet"]));
    assert!(!out.stdout.contains("test:q4"), "{}", out.stdout);
    assert!(
        file.is_file(),
        "rm deleted the adopted file {}",
        file.display()
    );
    env.check(&["rm", "test:q4"], Expect::Fails(&["`test:q4` not found"]));
    env.check(
        &run_args("test:q4", QUESTION),
        Expect::Fails(&["test:q4", "not in Hearth's registry"]),
    );
}

#[test]
fn interactive_run_reads_lines() {
    let Some(model) = test_model("interactive_run_reads_lines") else {
        return;
    };
    let env = Env::new();
    let file = model_in(&env, &model).display().to_string();
    env.check(&["import", &file, "--name", "test:q4"], Expect::Ok(&[]));
    let mut args = vec!["run", "test:q4"];
    args.extend(GREEDY);
    // After /clear the same question gets the same (first-turn) answer; nothing after /bye is
    // read; blank lines are skipped.
    let out = env.check_stdin(
        &args,
        &format!("{QUESTION}\n\n/clear\n{QUESTION}\n/bye\nWhat is 12 times 12?\n"),
        Expect::Ok(&[]),
    );
    let answers: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(answers.len(), 2, "{}", out.stdout);
    assert_golden(answers[0]);
    assert_eq!(answers[0], answers[1]);
    assert!(
        out.stderr.contains("(conversation cleared)"),
        "{}",
        out.stderr
    );
    // End of input ends the chat too.
    env.check_stdin(&args, "", Expect::Ok(&[]));
}

#[test]
fn import_copy_is_independent_of_the_source() {
    let Some(model) = test_model("import_copy_is_independent_of_the_source") else {
        return;
    };
    let env = Env::new();
    let file = model_in(&env, &model);
    let file_arg = file.display().to_string();
    env.check(
        &["import", &file_arg, "--name", "copy:q4", "--copy"],
        Expect::Ok(&["imported copy:q4", "copied into the data folder"]),
    );
    let out = env.check(&["show", "--path", "copy:q4"], Expect::Ok(&[]));
    let stored = PathBuf::from(out.stdout.trim());
    assert!(
        stored.starts_with(env.home()),
        "{} is not under {}",
        stored.display(),
        env.home().display()
    );
    std::fs::remove_file(&file).unwrap();
    let out = env.check(&run_args("copy:q4", QUESTION), Expect::Ok(&["Paris"]));
    assert_golden(&out.stdout);
    env.check(&["rm", "copy:q4"], Expect::Ok(&["deleted copy:q4"]));
    assert!(!stored.exists(), "rm left the copy {}", stored.display());
}

#[test]
fn import_refuses_a_truncated_model() {
    let Some(model) = test_model("import_refuses_a_truncated_model") else {
        return;
    };
    let env = Env::new();
    let bytes = std::fs::read(&model).unwrap();
    let cut = env.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    env.check(
        &["import", "cut.gguf", "--name", "cut:q4"],
        Expect::Fails(&["cut.gguf", "not usable", "outside the file"]),
    );
    env.check(
        &["import", "cut.gguf", "--name", "cut:q4", "--copy"],
        Expect::Fails(&["cut.gguf", "not usable"]),
    );
    env.check(&["list"], Expect::Ok(&["No models yet"]));
}
