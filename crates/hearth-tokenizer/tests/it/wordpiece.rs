//! WordPiece from `tokenizer.json`: golden ids from Hugging Face `tokenizers` (the MiniLM golden
//! file and an edge-case fixture made by tests/data/gen_wordpiece.py), a tiny hand-written
//! vocabulary, and hostile files.

use std::path::PathBuf;
use std::sync::OnceLock;

use hearth_tokenizer::{TokenizerError, WordPiece};
use proptest::prelude::*;
use serde_json::json;

use crate::{data_dir, golden_dir, ids_of, read_jsonl};

/// The tokenizer of the model folder under `HEARTH_TEST_EMBED_MODEL`, or `None` after printing
/// that the calling test is skipped.
fn minilm() -> Option<&'static WordPiece> {
    static TOK: OnceLock<Option<WordPiece>> = OnceLock::new();
    let t = TOK
        .get_or_init(|| {
            let dir = PathBuf::from(std::env::var_os("HEARTH_TEST_EMBED_MODEL")?);
            let path = dir.join("tokenizer.json");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Some(WordPiece::from_json(&text).unwrap())
        })
        .as_ref();
    if t.is_none() {
        eprintln!(
            "HEARTH_TEST_EMBED_MODEL is not set: skipping a test that needs the embedding model"
        );
    }
    t
}

fn check_rows(tok: &WordPiece, rows: &[serde_json::Value], key: &str, default_len: usize) {
    let mut bad = Vec::new();
    for r in rows {
        let text = r["text"].as_str().unwrap();
        let max_len = r
            .get("max_len")
            .and_then(serde_json::Value::as_u64)
            .map_or(default_len, |n| n as usize);
        let want = ids_of(&r[key]);
        let got = tok.encode(text, max_len);
        if got != want {
            bad.push(format!(
                "{text:?} (max {max_len}):\n  want {want:?}\n  got  {got:?}"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        rows.len(),
        bad.join("\n")
    );
}

#[test]
fn minilm_golden_token_ids() {
    let Some(tok) = minilm() else { return };
    let rows = read_jsonl(&golden_dir().join("minilm/embeddings.jsonl"));
    assert_eq!(rows.len(), 30);
    check_rows(tok, &rows, "token_ids", 256);
}

#[test]
fn minilm_edge_cases_match_hf_tokenizers() {
    let Some(tok) = minilm() else { return };
    let rows = read_jsonl(&data_dir().join("wordpiece-minilm.jsonl"));
    assert_eq!(rows.len(), 50);
    check_rows(tok, &rows, "ids", 256);
}

/// A tiny BERT-style tokenizer.json with `vocab` (ids in order) and the usual sections.
fn tiny(vocab: &[&str], max_chars: u64) -> serde_json::Value {
    let v: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), json!(i)))
        .collect();
    json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "[PAD]", "special": true, "normalized": false},
            {"id": 1, "content": "[UNK]", "special": true, "normalized": false},
            {"id": 2, "content": "[CLS]", "special": true, "normalized": false},
            {"id": 3, "content": "[SEP]", "special": true, "normalized": false},
        ],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": max_chars, "vocab": v}
    })
}

const TINY: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "want", "##ed", "runn", "##ing",
    ",", "!", "cafe", "中", "国", "a", "##a",
];

fn check(text: &str, max_len: usize, want: &[&str]) {
    static TOK: OnceLock<WordPiece> = OnceLock::new();
    let tok = TOK.get_or_init(|| WordPiece::from_json(&tiny(TINY, 12).to_string()).unwrap());
    let got: Vec<&str> = tok
        .encode(text, max_len)
        .iter()
        .map(|&id| tok.token_text(id).unwrap())
        .collect();
    assert_eq!(got, want, "{text:?}");
}

#[test]
fn tiny_vocabulary() {
    // Greedy longest-match-first with `##` continuation, BERT's own example; a word that
    // cannot be covered is one [UNK], whatever prefix matched.
    check(
        "unwanted running",
        64,
        &["[CLS]", "[UNK]", "runn", "##ing", "[SEP]"],
    );
    check(
        "UnAffable,WANTED!",
        64,
        &[
            "[CLS]", "un", "##aff", "##able", ",", "want", "##ed", "!", "[SEP]",
        ],
    );
    // Accents stripped after NFD, CJK ideographs split into words, controls dropped.
    check("Café\u{7}中国", 64, &["[CLS]", "cafe", "中", "国", "[SEP]"]);
    // Words over max_input_chars_per_word (12 here) are [UNK] even if they could be covered.
    let mut twelve = vec!["[CLS]", "a"];
    twelve.extend(["##a"; 11]);
    twelve.extend(["[UNK]", "[SEP]"]);
    check("aaaaaaaaaaaa aaaaaaaaaaaaa", 64, &twelve);
    // Special tokens in the raw text are kept whole; truncation keeps [CLS] and [SEP].
    check("a[SEP]a", 64, &["[CLS]", "a", "[SEP]", "a", "[SEP]"]);
    check("want want want", 4, &["[CLS]", "want", "want", "[SEP]"]);
    check("want", 0, &["[CLS]", "[SEP]"]);
    check("", 64, &["[CLS]", "[SEP]"]);
}

fn refused(doc: &serde_json::Value) -> String {
    match WordPiece::from_json(&doc.to_string()) {
        Err(e @ TokenizerError::TokenizerJson { .. }) => e.to_string(),
        other => panic!("expected a tokenizer.json error, got {other:?}"),
    }
}

#[test]
fn hostile_files_are_refused_with_the_field() {
    let base = tiny(TINY, 100);
    let with = |path: &[&str], v: serde_json::Value| {
        let mut d = base.clone();
        let mut cur = &mut d;
        for (i, k) in path.iter().enumerate() {
            if i + 1 == path.len() {
                cur[*k] = v.clone();
            } else {
                cur = &mut cur[*k];
            }
        }
        d
    };
    assert!(refused(&with(&["model", "type"], json!("BPE"))).contains("model.type"));
    assert!(refused(&with(&["model", "vocab"], json!([1, 2]))).contains("model.vocab"));
    assert!(
        refused(&with(&["model", "vocab"], json!({"a": 4294967296u64}))).contains("model.vocab")
    );
    assert!(refused(&with(&["model", "vocab"], json!({"a": 1u64 << 40}))).contains("model.vocab"));
    assert!(refused(&with(&["model", "unk_token"], json!("<unk>"))).contains("unk_token"));
    assert!(refused(&with(&["normalizer", "type"], json!("NFKC"))).contains("normalizer.type"));
    assert!(refused(&with(&["normalizer", "lowercase"], json!("yes"))).contains("lowercase"));
    assert!(
        refused(&with(&["pre_tokenizer", "type"], json!("Metaspace"))).contains("pre_tokenizer")
    );
    assert!(
        refused(&with(&["post_processor", "single"], json!([]))).contains("post_processor.single")
    );
    assert!(
        refused(&with(&["added_tokens"], json!([{"id": 5, "content": ""}])))
            .contains("added_tokens[0]")
    );
    let text = base.to_string();
    for cut in (0..text.len()).step_by(7) {
        if let Some(prefix) = text.get(..cut) {
            assert!(WordPiece::from_json(prefix).is_err(), "cut at {cut}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn any_text_gives_cls_pieces_sep(text in "\\PC{0,40}|[a-z ,!\u{300}\u{4e2d}\u{ac00}]{0,60}", max_len in 0usize..20) {
        static TOK: OnceLock<WordPiece> = OnceLock::new();
        let tok = TOK.get_or_init(|| WordPiece::from_json(&tiny(TINY, 8).to_string()).unwrap());
        let ids = tok.encode(&text, max_len);
        prop_assert!(ids.len() >= 2 && ids.len() <= max_len.max(2));
        prop_assert_eq!(ids.first().copied(), Some(tok.cls()));
        prop_assert_eq!(ids.last().copied(), Some(tok.sep()));
        prop_assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
    }
}
