//! Missing, mistyped and mismatched metadata give a clear error, never a panic.

use hearth_gguf::GgufFile;
use hearth_tokenizer::{Tokenizer, TokenizerError};

use crate::gguf_builder::{V, build};

fn toks(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

fn load(kvs: &[(&str, V<'_>)]) -> Result<Tokenizer, TokenizerError> {
    let file = GgufFile::from_bytes(build(kvs)).unwrap();
    Tokenizer::from_gguf(&file)
}

/// Loading must fail with an error whose message mentions `needle`.
fn check(kvs: &[(&str, V<'_>)], needle: &str) {
    match load(kvs) {
        Ok(_) => panic!("loaded; expected an error mentioning {needle:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
        }
    }
}

#[test]
fn missing_model_key() {
    check(
        &[("tokenizer.ggml.tokens", V::Strs(toks(3)))],
        "tokenizer.ggml.model",
    );
}

#[test]
fn unknown_model() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("t5")),
            ("tokenizer.ggml.tokens", V::Strs(toks(3))),
        ],
        "`t5`",
    );
}

#[test]
fn unknown_pre_tokenizer_is_named() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("gpt2")),
            ("tokenizer.ggml.pre", V::Str("no-such-pre")),
            ("tokenizer.ggml.tokens", V::Strs(toks(3))),
            ("tokenizer.ggml.merges", V::Strs(vec![])),
        ],
        "no-such-pre",
    );
}

#[test]
fn missing_tokens() {
    check(
        &[("tokenizer.ggml.model", V::Str("llama"))],
        "tokenizer.ggml.tokens",
    );
}

#[test]
fn tokens_of_wrong_type() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("llama")),
            ("tokenizer.ggml.tokens", V::I32s(vec![1, 2])),
        ],
        "tokenizer.ggml.tokens",
    );
}

#[test]
fn missing_merges_for_gpt2() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("gpt2")),
            ("tokenizer.ggml.pre", V::Str("gpt-2")),
            ("tokenizer.ggml.tokens", V::Strs(toks(3))),
        ],
        "tokenizer.ggml.merges",
    );
}

#[test]
fn short_scores() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("llama")),
            ("tokenizer.ggml.tokens", V::Strs(toks(4))),
            ("tokenizer.ggml.scores", V::F32s(vec![0.0; 3])),
        ],
        "tokenizer.ggml.scores",
    );
}

#[test]
fn short_token_types() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("llama")),
            ("tokenizer.ggml.tokens", V::Strs(toks(4))),
            ("tokenizer.ggml.token_type", V::I32s(vec![1; 2])),
        ],
        "tokenizer.ggml.token_type",
    );
}

#[test]
fn duplicate_tokens() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("llama")),
            (
                "tokenizer.ggml.tokens",
                V::Strs(vec!["a".into(), "b".into(), "a".into()]),
            ),
        ],
        "duplicate",
    );
}

#[test]
fn add_bos_without_bos() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("gpt2")),
            ("tokenizer.ggml.pre", V::Str("gpt-2")),
            ("tokenizer.ggml.tokens", V::Strs(toks(3))),
            ("tokenizer.ggml.merges", V::Strs(vec![])),
            ("tokenizer.ggml.add_bos_token", V::Bool(true)),
        ],
        "BOS",
    );
}

#[test]
fn bool_key_of_wrong_type() {
    check(
        &[
            ("tokenizer.ggml.model", V::Str("llama")),
            ("tokenizer.ggml.tokens", V::Strs(toks(3))),
            ("tokenizer.ggml.add_bos_token", V::U32(1)),
        ],
        "tokenizer.ggml.add_bos_token",
    );
}

#[test]
fn out_of_range_ids_are_dropped_and_odd_vocab_still_encodes() {
    // Broken merges, ids past the vocabulary, empty tokens: loads (as llama.cpp does) and encodes
    // without panicking.
    let tok = load(&[
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str("llama-bpe")),
        (
            "tokenizer.ggml.tokens",
            V::Strs(vec!["a".into(), "".into(), "ab".into(), "Ġ".into()]),
        ),
        (
            "tokenizer.ggml.merges",
            V::Strs(vec![
                "a b".into(),
                "nospace".into(),
                " x".into(),
                "é ü".into(),
                "ab Ġ".into(),
            ]),
        ),
        ("tokenizer.ggml.bos_token_id", V::U32(99)),
        ("tokenizer.ggml.eos_token_id", V::U32(7)),
        ("tokenizer.ggml.add_bos_token", V::Bool(false)),
    ])
    .unwrap();
    assert_eq!(tok.bos(), None);
    assert_eq!(tok.eos(), None);
    assert_eq!(tok.token_text(1), Some("[EMPTY_1]"));
    let _ = tok.encode("ab ab b\u{0}\u{10FFFF} 😀", true, true);
    assert_eq!(tok.encode("a", true, true), vec![0]);
    assert_eq!(tok.decode(&[0, 2, 3, 99, u32::MAX], true), "aab ");
}

mod fuzz {
    use proptest::prelude::*;

    use super::{V, load};
    use crate::{spm_fixture, test_model};

    fn vocab_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-cĠ<>|]{1,4}",
            Just("<0x41>".to_owned()),
            Just("▁".to_owned()),
            "\\PC{0,3}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random vocabularies, merges, types and scores load or fail cleanly, and whatever loads
        /// encodes and decodes any text without panicking.
        #[test]
        fn random_metadata_never_panics(
            spm in any::<bool>(),
            tokens in proptest::collection::vec(vocab_piece(), 1..12),
            merges in proptest::collection::vec("[a-cĠ ]{0,5}", 0..12),
            types in proptest::collection::vec(0i32..8, 0..14),
            scores in proptest::collection::vec(-5.0f32..5.0, 0..14),
            text in "\\PC{0,24}",
        ) {
            let model = if spm { "llama" } else { "gpt2" };
            let kvs = [
                ("tokenizer.ggml.model", V::Str(model)),
                ("tokenizer.ggml.pre", V::Str("smollm")),
                ("tokenizer.ggml.tokens", V::Strs(tokens)),
                ("tokenizer.ggml.merges", V::Strs(merges)),
                ("tokenizer.ggml.token_type", V::I32s(types)),
                ("tokenizer.ggml.scores", V::F32s(scores)),
                ("tokenizer.ggml.add_bos_token", V::Bool(false)),
            ];
            if let Ok(tok) = load(&kvs) {
                for (add, parse) in [(false, false), (true, true)] {
                    let ids = tok.encode(&text, add, parse);
                    let _ = tok.decode(&ids, parse);
                }
            }
        }

        /// Any text through the real tokenizers: no panic, and every id is in the vocabulary.
        #[test]
        fn any_text_encodes(text in "\\PC{0,64}", add in any::<bool>(), parse in any::<bool>()) {
            let spm = spm_fixture();
            let ids = spm.encode(&text, add, parse);
            prop_assert!(ids.iter().all(|&i| (i as usize) < spm.vocab_size()));
            if let Some(tok) = test_model() {
                let ids = tok.encode(&text, add, parse);
                prop_assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
            }
        }
    }
}
