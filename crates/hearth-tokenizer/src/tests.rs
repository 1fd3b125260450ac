use proptest::prelude::*;

use crate::StreamDecoder;
use crate::bpe::{decode_mapped, encode_mapped};
use crate::unicode::{LETTER, NUMBER, WHITESPACE, byte_to_char, char_to_byte, flags};

/// Pre-tokenizer splits against a real regex engine's (tests/data/make_pretok_fixture.py).
#[test]
fn pretokenizers_match_regex_engine() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pretok.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let mut failures = Vec::new();
    let mut rows = 0;
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let pre = crate::load::pre_for(row["pre"].as_str().unwrap()).unwrap();
        let text = row["text"].as_str().unwrap();
        let expect: Vec<&str> = row["words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        let mut ranges = Vec::new();
        crate::pretok::split(text, &pre.passes, &mut ranges);
        let got: Vec<&str> = ranges.iter().map(|&(a, b)| &text[a..b]).collect();
        if got != expect {
            failures.push(format!(
                "{} {text:?}\n  expect {expect:?}\n  got    {got:?}",
                row["pre"]
            ));
        }
        rows += 1;
    }
    assert!(rows > 50);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gpt2_byte_map() {
    assert_eq!(byte_to_char(b' '), 'Ġ');
    assert_eq!(byte_to_char(b'\n'), 'Ċ');
    assert_eq!(byte_to_char(b'a'), 'a');
    assert_eq!(byte_to_char(0xAD), 'Ń');
    for b in 0..=255u8 {
        assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
    }
    assert_eq!(char_to_byte(' '), None);
    assert_eq!(decode_mapped("ĠHello"), Some(b" Hello".to_vec()));
    assert_eq!(encode_mapped("é".as_bytes()), "Ã©");
}

#[test]
fn codepoint_flags() {
    let check = |c: char, bit: u16| assert!(flags(c) & bit != 0, "{c:?} {:#x}", flags(c));
    check('a', LETTER);
    check('中', LETTER);
    check('1', NUMBER);
    check('½', NUMBER);
    check('٣', NUMBER);
    check(' ', WHITESPACE);
    check('\u{a0}', WHITESPACE);
    check('\u{3000}', WHITESPACE);
    assert_eq!(flags('\u{200b}') & (WHITESPACE | LETTER | NUMBER), 0);
    assert_ne!(flags('\u{10FFFF}'), 0);
}

/// llama.cpp's `clean_spaces` passes, worked out by hand from `llama_vocab::impl::detokenize`.
#[test]
fn clean_spaces_passes() {
    let check = |input: &str, expect: &str| {
        assert_eq!(
            String::from_utf8(crate::clean_spaces(input.as_bytes())).unwrap(),
            expect,
            "{input:?}"
        );
    };
    check("", "");
    check(" ,", ",");
    check("Hello , world !", "Hello, world!");
    check("a ' b", "a'b");
    check("a ' ' b", "a'' b");
    check("I 'm you 're we 've it 's", "I'm you're we've it's");
    check("do n't I 'll he 'd", "do n't I 'll he 'd");
    check(" 's", "'s");
}

proptest! {
    /// Streaming arbitrary bytes in arbitrary chunks gives what lossy decoding of the whole gives,
    /// and no chunk ends inside a character that later bytes complete.
    #[test]
    fn stream_decoder_equals_lossy(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                                   cuts in proptest::collection::vec(0usize..64, 0..16)) {
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut d = StreamDecoder::new();
        let mut all = String::new();
        for w in cuts.windows(2) {
            all.push_str(&d.push_bytes(&bytes[w[0]..w[1]]));
        }
        all.push_str(&d.finish());
        prop_assert_eq!(all, String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn stream_decoder_valid_utf8_never_replaces(s in "\\PC*", cut in 0usize..200) {
        let b = s.as_bytes();
        let cut = cut.min(b.len());
        let mut d = StreamDecoder::new();
        let first = d.push_bytes(&b[..cut]);
        let second = d.push_bytes(&b[cut..]);
        let replaced = first.contains(char::REPLACEMENT_CHARACTER);
        prop_assert!(!replaced || s.contains(char::REPLACEMENT_CHARACTER));
        prop_assert_eq!(format!("{first}{second}{}", d.finish()), s);
    }
}

#[test]
fn tokenizer_can_be_shared_across_threads() {
    fn check<T: Send + Sync>() {}
    check::<crate::Tokenizer>();
    check::<StreamDecoder>();
}

/// A rank file in tiktoken's format (base64 of each token's bytes; Python's `base64` module
/// wrote these: b"hello", b" world", b"\xc3", b"\xa9", b"!").
const RANKS: &str = "aGVsbG8= 0\nIHdvcmxk 1\nww== 2\nqQ== 3\nIQ== 4\n";

#[test]
fn tiktoken_ids_decode_to_text() {
    let v = crate::TiktokenVocab::parse(RANKS, &[("<|endoftext|>", 9)]).unwrap();
    let check = |ids: &[u32], want: Result<&str, u32>| {
        assert_eq!(
            v.decode(ids).map_err(|e| e.0),
            want.map(str::to_owned),
            "{ids:?}"
        );
    };
    check(&[0, 1, 4], Ok("hello world!"));
    check(&[], Ok(""));
    // A character split over two tokens joins up; alone, its half is U+FFFD.
    check(&[2, 3], Ok("é"));
    check(&[2, 4], Ok("\u{fffd}!"));
    check(&[0, 9], Ok("hello<|endoftext|>"));
    // Gaps and ids past the end are unknown.
    check(&[0, 5], Err(5));
    check(&[u32::MAX], Err(u32::MAX));
}

#[test]
fn tiktoken_rank_files_are_hostile_input() {
    let bad = [
        "",
        "aGVsbG8=\n",
        "aGVsbG8= x\n",
        "aGVsbG8 0\n",
        "a=GV 0\n",
        "aGVsbG8= 0\naGVsbG8= 0\n",
        "aGVsbG8= 99999999999\n",
        "aGVsbG8= -1\n",
        "@@@@ 0\n",
    ];
    for text in bad {
        assert!(crate::TiktokenVocab::parse(text, &[]).is_err(), "{text:?}");
    }
    // A special token may not take an id the file uses.
    assert!(crate::TiktokenVocab::parse(RANKS, &[("<|x|>", 0)]).is_err());
}
