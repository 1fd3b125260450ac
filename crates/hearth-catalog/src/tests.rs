use crate::hub::pick_quant;
use crate::name::encode_key;
use crate::pip::unsafe_member_path;

#[test]
fn keys_are_file_name_safe() {
    fn check(name: &str, expect: &str) {
        assert_eq!(encode_key(name), expect);
    }
    check("smollm2:135m", "smollm2%3A135m");
    check(
        "hf.co/Owner/Repo-GGUF:x.gguf",
        "hf.co%2FOwner%2FRepo-GGUF%3Ax.gguf",
    );
    check("a_b-c.d", "a_b-c.d");
}

#[test]
fn member_paths() {
    fn check(path: &str, safe: bool) {
        assert_eq!(unsafe_member_path(path).is_none(), safe, "{path}");
    }
    check("pkg/model.gguf", true);
    check("pkg-0.1.dist-info/METADATA", true);
    check("a..b/c", true);
    check("../evil", false);
    check("pkg/../../evil", false);
    check("/etc/passwd", false);
    check("\\evil", false);
    check("pkg\\..\\evil", false);
    check("C:/evil", false);
    check("", false);
    check("..", false);
}

#[test]
fn quant_selection() {
    fn check(files: &[&str], tag: &str, expect: Result<&str, &str>) {
        let files: Vec<String> = files.iter().map(|s| (*s).to_owned()).collect();
        match (pick_quant(&files, tag), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} should contain {want:?}"),
            (got, want) => panic!("{files:?} {tag}: got {got:?}, want {want:?}"),
        }
    }
    let repo = [
        "M-Q4_K_M.gguf",
        "M-Q4_K_S.gguf",
        "M-Q8_0.gguf",
        "M-F16.gguf",
    ];
    check(&repo, "Q4_K_M", Ok("M-Q4_K_M.gguf"));
    check(&repo, "q8_0", Ok("M-Q8_0.gguf"));
    check(&repo, "latest", Ok("M-Q4_K_M.gguf"));
    check(&repo, "Q5_K_M", Err("no .gguf file matches"));
    check(&["M-Q4_0.gguf", "M-F16.gguf"], "latest", Ok("M-Q4_0.gguf"));
    check(&["only.gguf"], "latest", Ok("only.gguf"));
    check(
        &["a/M-Q4_K_M.gguf", "b/M-Q4_K_M.gguf"],
        "Q4_K_M",
        Err("several files match"),
    );
    check(&[], "latest", Err("no .gguf file"));
}
