//! Byte-level BPE with Llama 3's and Qwen2's pre-tokenizers against Hugging Face `tokenizers`
//! (tests/data/make_bpe_fixture.py).

use hearth_gguf::GgufFile;
use hearth_tokenizer::Tokenizer;

use crate::{data_dir, ids_of, read_jsonl};

fn check(pre: &str) {
    let bytes = std::fs::read(data_dir().join(format!("bpe-{pre}.gguf"))).unwrap();
    let tok = Tokenizer::from_gguf(&GgufFile::from_bytes(bytes).unwrap()).unwrap();
    let rows = read_jsonl(&data_dir().join(format!("bpe-{pre}.jsonl")));
    assert!(rows.len() >= 20);
    let mut failures = Vec::new();
    for row in &rows {
        let text = row["text"].as_str().unwrap();
        let expect = ids_of(&row["ids"]);
        let got = tok.encode(text, false, true);
        if got != expect {
            failures.push(format!("{text:?}\n  expect {expect:?}\n  got    {got:?}"));
        }
        // Byte-level BPE gives the text back, control tokens included when asked.
        let back = tok.decode(&got, true);
        if pre == "qwen2" {
            assert_eq!(back, text, "{got:?}");
        }
    }
    assert!(
        failures.is_empty(),
        "{pre}: {} rows differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llama3_matches_hf_tokenizers() {
    check("llama-bpe");
}

#[test]
fn qwen2_matches_hf_tokenizers() {
    check("qwen2");
}

#[test]
fn llama3_flags() {
    let bytes = std::fs::read(data_dir().join("bpe-llama-bpe.gguf")).unwrap();
    let tok = Tokenizer::from_gguf(&GgufFile::from_bytes(bytes).unwrap()).unwrap();
    let bos = tok.bos().unwrap();
    // add_bos_token is false in the file, overriding llama3's default of true.
    assert!(!tok.add_bos());
    assert_ne!(tok.encode("hi", true, false).first().copied(), Some(bos));
    // <|eot_id|>, <|end_of_text|> (also eos), <|im_end|> end generation.
    let eog: Vec<&str> = tok
        .eog_ids()
        .iter()
        .map(|&i| tok.token_text(i).unwrap())
        .collect();
    assert_eq!(eog.len(), 3, "{eog:?}");
    for t in ["<|end_of_text|>", "<|eot_id|>", "<|im_end|>"] {
        assert!(eog.contains(&t), "{eog:?}");
    }
    // llama3 cleans up spaces when decoding, as llama.cpp does.
    let ids = tok.encode("Hello , world !", false, false);
    assert_eq!(tok.decode(&ids, false), "Hello, world!");
}
