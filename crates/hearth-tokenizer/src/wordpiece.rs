//! BERT's WordPiece tokenizer, built from a Hugging Face `tokenizer.json`, matching the
//! `tokenizers` library for the configurations BERT-family embedding models use:
//!
//! - special added tokens are split out of the raw text first (leftmost, longest);
//! - `BertNormalizer`: clean text (drop NUL, U+FFFD and controls, whitespace → space), pad CJK
//!   ideographs with spaces, strip accents (NFD, then drop Mn), lowercase;
//! - `BertPreTokenizer`: split on whitespace (removed) and punctuation (kept as words);
//! - `WordPiece`: greedy longest-match-first with the continuation prefix (`##`); a word longer
//!   than `max_input_chars_per_word` characters, or one that cannot be covered, is `[UNK]`;
//! - `TemplateProcessing` / `BertProcessing`: `[CLS] … [SEP]`, truncating the text's tokens so
//!   the whole fits the asked length.
//!
//! Known differences from `tokenizers` (none reached by the golden data): Unicode data is
//! Python's `unicodedata` 14.0 (tokenizers' crates use older tables, so codepoints assigned
//! since may classify differently); NFD is applied per character without canonical reordering
//! (only the order of surviving non-Mn combining marks could differ); all added tokens are
//! matched in the raw text (tokenizers matches `normalized: true` ones after normalization).

use std::collections::HashMap;

use serde_json::Value;

use crate::TokenizerError;
use crate::wordpiece_table::{BERT_RANGES, MN, NFD, OTHER, PUNCT};

/// Largest vocabulary id accepted (bounds the id → text table a hostile file could ask for).
const MAX_ID: u64 = 1 << 22;

#[derive(Debug, Clone, Copy)]
struct BertNorm {
    clean_text: bool,
    chinese: bool,
    strip_accents: bool,
    lowercase: bool,
}

/// A WordPiece tokenizer (BERT family) read from `tokenizer.json`.
#[derive(Debug)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    texts: Vec<String>,
    unk: u32,
    cls: u32,
    sep: u32,
    prefix: String,
    max_chars: usize,
    norm: Option<BertNorm>,
    /// Added tokens matched in the raw text, by first character: (content, id), longest first.
    added: HashMap<char, Vec<(String, u32)>>,
    truncation: Option<usize>,
}

fn bert_flags(c: char) -> u8 {
    let cp = u32::from(c);
    let i = BERT_RANGES.partition_point(|&(start, _)| start <= cp);
    BERT_RANGES.get(i.wrapping_sub(1)).map_or(0, |&(_, f)| f)
}

fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_bert_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && bert_flags(c) & OTHER != 0
}

fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || bert_flags(c) & PUNCT != 0
}

fn is_chinese_char(c: char) -> bool {
    matches!(
        u32::from(c),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// Canonical decomposition of `c` (Hangul algorithmically, the rest from the table), each
/// resulting character passed to `f`.
fn decompose(c: char, f: &mut impl FnMut(char)) {
    const S_BASE: u32 = 0xAC00;
    const L_BASE: u32 = 0x1100;
    const V_BASE: u32 = 0x1161;
    const T_BASE: u32 = 0x11A7;
    const T_COUNT: u32 = 28;
    const N_COUNT: u32 = 21 * 28;
    let cp = u32::from(c);
    if (S_BASE..S_BASE + 11172).contains(&cp) {
        let s = cp - S_BASE;
        let parts = [
            L_BASE + s / N_COUNT,
            V_BASE + (s % N_COUNT) / T_COUNT,
            T_BASE + s % T_COUNT,
        ];
        for (i, p) in parts.into_iter().enumerate() {
            if i == 2 && p == T_BASE {
                break;
            }
            if let Some(ch) = char::from_u32(p) {
                f(ch);
            }
        }
        return;
    }
    match NFD.binary_search_by_key(&cp, |&(k, _)| k) {
        Ok(i) => {
            if let Some(&(_, d)) = NFD.get(i) {
                d.chars().for_each(&mut *f);
            }
        }
        Err(_) => f(c),
    }
}

impl BertNorm {
    fn normalize(&self, text: &str, out: &mut String) {
        for c in text.chars() {
            let mut c = c;
            if self.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_bert_control(c) {
                    continue;
                }
                if is_bert_whitespace(c) {
                    c = ' ';
                }
            }
            let pad = self.chinese && is_chinese_char(c);
            if pad {
                out.push(' ');
            }
            let lower = self.lowercase;
            let mut emit = |d: char| {
                if lower {
                    out.extend(d.to_lowercase());
                } else {
                    out.push(d);
                }
            };
            if self.strip_accents {
                decompose(c, &mut |d| {
                    if bert_flags(d) & MN == 0 {
                        emit(d);
                    }
                });
            } else {
                emit(c);
            }
            if pad {
                out.push(' ');
            }
        }
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn as_bool(v: &Value, key: &str, path: &str, default: bool) -> Result<bool, TokenizerError> {
    match field(v, key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(TokenizerError::json(
            &format!("{path}.{key}"),
            "must be true or false",
        )),
    }
}

fn as_id(v: &Value, path: &str) -> Result<u32, TokenizerError> {
    v.as_u64()
        .filter(|&n| n < MAX_ID)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| TokenizerError::json(path, format!("must be a token id below {MAX_ID}")))
}

impl WordPiece {
    /// Builds the tokenizer a `tokenizer.json` describes. Only a `WordPiece` model with a
    /// `BertNormalizer` (or none), a `BertPreTokenizer` and a `[CLS] A [SEP]` post-processor
    /// is accepted; anything else is refused with the field that differs.
    pub fn from_json(json: &str) -> Result<Self, TokenizerError> {
        let root: Value = serde_json::from_str(json)
            .map_err(|e| TokenizerError::json("(file)", format!("is not valid JSON: {e}")))?;
        let model =
            field(&root, "model").ok_or_else(|| TokenizerError::json("model", "is missing"))?;
        match model.get("type").and_then(Value::as_str) {
            Some("WordPiece") => {}
            other => {
                return Err(TokenizerError::json(
                    "model.type",
                    format!(
                        "is {other:?}; only WordPiece tokenizer.json files are supported (GGUF models carry their own tokenizer)"
                    ),
                ));
            }
        }
        let vocab_v = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| TokenizerError::json("model.vocab", "must be an object"))?;
        let mut vocab = HashMap::with_capacity(vocab_v.len());
        let mut texts: Vec<String> = Vec::new();
        let put = |text: &str, id: u32, texts: &mut Vec<String>| {
            let i = id as usize;
            if texts.len() <= i {
                texts.resize(i + 1, String::new());
            }
            if let Some(t) = texts.get_mut(i) {
                *t = text.to_owned();
            }
        };
        for (text, id) in vocab_v {
            let id = as_id(id, &format!("model.vocab[{text:?}]"))?;
            vocab.insert(text.clone(), id);
            put(text, id, &mut texts);
        }
        let str_field = |key: &str, default: &str| -> Result<String, TokenizerError> {
            match field(model, key) {
                None => Ok(default.to_owned()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(TokenizerError::json(
                    &format!("model.{key}"),
                    "must be a string",
                )),
            }
        };
        let unk_text = str_field("unk_token", "[UNK]")?;
        let prefix = str_field("continuing_subword_prefix", "##")?;
        let max_chars = match field(model, "max_input_chars_per_word") {
            None => 100,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    TokenizerError::json("model.max_input_chars_per_word", "must be a count")
                })?,
        };

        let mut added = Vec::new();
        if let Some(list) = field(&root, "added_tokens") {
            let list = list
                .as_array()
                .ok_or_else(|| TokenizerError::json("added_tokens", "must be an array"))?;
            for (i, t) in list.iter().enumerate() {
                let content = t
                    .get("content")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        TokenizerError::json(
                            &format!("added_tokens[{i}].content"),
                            "must be a non-empty string",
                        )
                    })?;
                let id = as_id(
                    t.get("id").unwrap_or(&Value::Null),
                    &format!("added_tokens[{i}].id"),
                )?;
                vocab.insert(content.to_owned(), id);
                put(content, id, &mut texts);
                added.push((content.to_owned(), id));
            }
        }
        added.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut by_first: HashMap<char, Vec<(String, u32)>> = HashMap::new();
        for (t, id) in added {
            if let Some(c) = t.chars().next() {
                by_first.entry(c).or_default().push((t, id));
            }
        }
        let added = by_first;

        let unk = *vocab.get(&unk_text).ok_or_else(|| {
            TokenizerError::json(
                "model.unk_token",
                format!("{unk_text:?} is not in the vocabulary"),
            )
        })?;

        let norm = match field(&root, "normalizer") {
            None => None,
            Some(n) => match n.get("type").and_then(Value::as_str) {
                Some("BertNormalizer") => {
                    let lowercase = as_bool(n, "lowercase", "normalizer", true)?;
                    Some(BertNorm {
                        clean_text: as_bool(n, "clean_text", "normalizer", true)?,
                        chinese: as_bool(n, "handle_chinese_chars", "normalizer", true)?,
                        strip_accents: as_bool(n, "strip_accents", "normalizer", lowercase)?,
                        lowercase,
                    })
                }
                other => {
                    return Err(TokenizerError::json(
                        "normalizer.type",
                        format!("is {other:?}; only BertNormalizer is supported"),
                    ));
                }
            },
        };
        match field(&root, "pre_tokenizer").map(|p| p.get("type").and_then(Value::as_str)) {
            None | Some(Some("BertPreTokenizer")) => {}
            Some(other) => {
                return Err(TokenizerError::json(
                    "pre_tokenizer.type",
                    format!("is {other:?}; only BertPreTokenizer is supported"),
                ));
            }
        }
        let (cls, sep) = post_processor(field(&root, "post_processor"), &vocab)?;
        let truncation = field(&root, "truncation")
            .and_then(|t| t.get("max_length"))
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        Ok(Self {
            vocab,
            texts,
            unk,
            cls,
            sep,
            prefix,
            max_chars,
            norm,
            added,
            truncation,
        })
    }

    /// Token ids of `text`: `[CLS]`, the text's word pieces (truncated so the whole has at most
    /// `max_len` ids; at least the two special tokens are always there), `[SEP]`.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let limit = max_len.saturating_sub(2);
        let mut ids = Vec::with_capacity((text.len() / 3).min(limit) + 2);
        ids.push(self.cls);
        let mut normalized = String::new();
        let mut word = String::new();
        let mut rest = text;
        'outer: while !rest.is_empty() && ids.len() - 1 < limit {
            let (plain, special) = self.next_added(rest);
            let (chunk, after) = rest.split_at(plain);
            normalized.clear();
            match self.norm {
                Some(n) => n.normalize(chunk, &mut normalized),
                None => normalized.push_str(chunk),
            }
            for c in normalized.chars() {
                if c.is_whitespace() || is_bert_punctuation(c) {
                    if !word.is_empty() {
                        self.word_pieces(&word, &mut ids);
                        word.clear();
                    }
                    if !c.is_whitespace() {
                        word.push(c);
                        self.word_pieces(&word, &mut ids);
                        word.clear();
                    }
                    if ids.len() > limit {
                        break 'outer;
                    }
                } else {
                    word.push(c);
                }
            }
            if !word.is_empty() {
                self.word_pieces(&word, &mut ids);
                word.clear();
            }
            rest = after;
            if let Some((len, id)) = special {
                if ids.len() - 1 < limit {
                    ids.push(id);
                }
                rest = rest.get(len..).unwrap_or_default();
            }
        }
        ids.truncate(limit + 1);
        ids.push(self.sep);
        ids
    }

    /// Byte length of the text before the first added token in `s`, and that token's length
    /// and id (leftmost match; the longest one there).
    fn next_added(&self, s: &str) -> (usize, Option<(usize, u32)>) {
        if self.added.is_empty() {
            return (s.len(), None);
        }
        for (pos, c) in s.char_indices() {
            let Some(candidates) = self.added.get(&c) else {
                continue;
            };
            let tail = s.get(pos..).unwrap_or_default();
            if let Some((t, id)) = candidates
                .iter()
                .find(|(t, _)| tail.starts_with(t.as_str()))
            {
                return (pos, Some((t.len(), *id)));
            }
        }
        (s.len(), None)
    }

    /// WordPiece of one pre-tokenized word.
    fn word_pieces(&self, word: &str, out: &mut Vec<u32>) {
        if word.chars().count() > self.max_chars {
            out.push(self.unk);
            return;
        }
        let start_len = out.len();
        let mut start = 0;
        let mut piece = String::with_capacity(word.len() + self.prefix.len());
        while start < word.len() {
            let mut found = None;
            let mut end = word.len();
            while end > start {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.prefix);
                }
                piece.push_str(word.get(start..end).unwrap_or_default());
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
                while end > start && !word.is_char_boundary(end) {
                    end -= 1;
                }
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(start_len);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }

    /// The maximum length `tokenizer.json`'s own truncation section names, if any.
    /// (sentence-transformers models override it with `max_seq_length`.)
    pub fn truncation(&self) -> Option<usize> {
        self.truncation
    }

    /// Number of ids (the largest id + 1).
    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// The token's text, if `id` names one.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts
            .get(id as usize)
            .map(String::as_str)
            .filter(|t| !t.is_empty())
    }

    /// The id of a token's text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.get(text).copied()
    }

    /// The `[CLS]`, `[SEP]` and `[UNK]` ids.
    pub fn cls(&self) -> u32 {
        self.cls
    }

    pub fn sep(&self) -> u32 {
        self.sep
    }

    pub fn unk(&self) -> u32 {
        self.unk
    }
}

/// The (cls, sep) ids of a single-sequence `[CLS] $A [SEP]` post-processor.
fn post_processor(
    p: Option<&Value>,
    vocab: &HashMap<String, u32>,
) -> Result<(u32, u32), TokenizerError> {
    let lookup = |t: &str, path: &str| {
        vocab.get(t).copied().ok_or_else(|| {
            TokenizerError::json(path, format!("names {t:?}, which is not in the vocabulary"))
        })
    };
    let Some(p) = p else {
        return Ok((
            lookup("[CLS]", "post_processor")?,
            lookup("[SEP]", "post_processor")?,
        ));
    };
    match p.get("type").and_then(Value::as_str) {
        Some("BertProcessing") => {
            let pair = |key: &str| -> Result<u32, TokenizerError> {
                let path = format!("post_processor.{key}");
                p.get(key)
                    .and_then(Value::as_array)
                    .and_then(|a| a.get(1))
                    .ok_or_else(|| TokenizerError::json(&path, "must be [token, id]"))
                    .and_then(|v| as_id(v, &path))
            };
            Ok((pair("cls")?, pair("sep")?))
        }
        Some("TemplateProcessing") => {
            let single = p
                .get("single")
                .and_then(Value::as_array)
                .ok_or_else(|| TokenizerError::json("post_processor.single", "must be an array"))?;
            let special = |v: Option<&Value>| -> Option<String> {
                v?.get("SpecialToken")?
                    .get("id")?
                    .as_str()
                    .map(str::to_owned)
            };
            let is_seq = single.get(1).and_then(|v| v.get("Sequence")).is_some();
            let (Some(a), true, Some(b), 3) = (
                special(single.first()),
                is_seq,
                special(single.get(2)),
                single.len(),
            ) else {
                return Err(TokenizerError::json(
                    "post_processor.single",
                    "must be [special, sequence, special]; other templates are not supported",
                ));
            };
            let id_of = |name: &str| -> Result<u32, TokenizerError> {
                let path = format!("post_processor.special_tokens[{name:?}]");
                match p
                    .get("special_tokens")
                    .and_then(|s| s.get(name))
                    .and_then(|s| s.get("ids"))
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                {
                    Some([id]) => as_id(id, &path),
                    Some(_) => Err(TokenizerError::json(&path, "must name exactly one id")),
                    None => lookup(name, &path),
                }
            };
            Ok((id_of(&a)?, id_of(&b)?))
        }
        other => Err(TokenizerError::json(
            "post_processor.type",
            format!("is {other:?}; only TemplateProcessing and BertProcessing are supported"),
        )),
    }
}
