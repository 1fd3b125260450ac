//! StreamDecoder: token by token, the text comes out whole and never splits a character.

use hearth_tokenizer::{StreamDecoder, Tokenizer};
use proptest::prelude::*;

use crate::{spm_fixture, test_model};

/// Streams `ids` one by one; checks each piece and returns the whole.
fn stream(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut d = StreamDecoder::new();
    let mut all = String::new();
    for &id in ids {
        all.push_str(&d.push(tok, id));
    }
    all.push_str(&d.finish());
    all
}

/// Streaming gives exactly the tokens' bytes, and those are `expect`.
fn check(tok: &Tokenizer, text: &str, expect: &str) {
    let ids = tok.encode(text, false, false);
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| tok.token_bytes(id, false).to_vec())
        .collect();
    assert_eq!(String::from_utf8_lossy(&bytes), expect, "ids {ids:?}");
    let got = stream(tok, &ids);
    assert_eq!(got, expect, "ids {ids:?}");
}

/// Characters whose bytes SmolLM2's vocabulary has byte tokens for (it lacks e.g. 0xF1, 0xF2, so
/// llama.cpp drops those bytes too).
fn model_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::char::range('a', 'z'),
            Just(' '),
            Just('\n'),
            Just('é'),
            Just('中'),
            Just('😀'),
            Just('👍'),
            Just('\u{200d}'),
            proptest::char::range('\u{20}', '\u{d7ff}'),
        ],
        0..40,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn any_text() -> impl Strategy<Value = String> {
    // Mix ASCII, accented letters, CJK, emoji (4-byte, byte-fallback in the fixture) and spaces.
    proptest::collection::vec(
        prop_oneof![
            proptest::char::range('a', 'z'),
            Just(' '),
            Just('\n'),
            Just('é'),
            Just('ß'),
            Just('中'),
            Just('😀'),
            Just('👍'),
            Just('\u{200d}'),
            proptest::char::any(),
        ],
        0..40,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn spm_stream_gives_back_the_text(text in any_text()) {
        let tok = spm_fixture();
        // SentencePiece adds its dummy-prefix space; streaming keeps it (as llama.cpp's server).
        let expect = if text.is_empty() { String::new() } else { format!(" {text}") };
        check(tok, &text, &expect);
    }

    #[test]
    fn model_stream_gives_back_the_text(text in model_text()) {
        let Some(tok) = test_model() else { return Ok(()); };
        check(tok, &text, &text);
    }
}

#[test]
fn stream_holds_back_partial_characters() {
    let tok = spm_fixture();
    let ids = tok.encode("😀", false, false);
    let mut d = StreamDecoder::new();
    let outs: Vec<String> = ids.iter().map(|&id| d.push(tok, id)).collect();
    // " " then three partial bytes held back, then the whole emoji.
    assert_eq!(outs.concat(), " 😀");
    assert!(
        outs.iter().filter(|s| s.is_empty()).count() >= 3,
        "{outs:?}"
    );
    assert_eq!(d.finish(), "");
}
