#![forbid(unsafe_code)]
//! Text <-> token ids from a GGUF file's tokenizer metadata, matching llama.cpp's `llama-vocab.cpp`.
//!
//! Two tokenizer models are implemented:
//! - `gpt2`: byte-level BPE with ranked merges (SmolLM2, Llama 3, Qwen2), words split first by the
//!   pre-tokenizer that `tokenizer.ggml.pre` names;
//! - `llama`: SentencePiece BPE with scores and `<0xXX>` byte fallback (Llama 2, Mistral).
//!
//! Special tokens (control, user-defined, unknown) are split out of the text before BPE when
//! asked, exactly as llama.cpp's `tokenizer_st_partition` does, and the end-of-generation set is
//! derived from ids and token texts the way llama.cpp derives it.
//!
//! Where we knowingly differ from llama.cpp (all outside the tested models' behaviour):
//! - text-based EOT/EOM/FIM detection takes the lowest matching id (llama.cpp: hash-map order);
//!   this can change which id [`Tokenizer::eog_ids`] calls EOT, never the EOG set itself;
//! - the `lstrip`/`rstrip` attributes llama.cpp sets by model name (phi-3, jina, modern-bert) are
//!   not applied; special tokens of equal text length are tried in id order (llama.cpp: unstable
//!   sort);
//! - codepoint classes come from `tools/gen_unicode_table.py` (same method as llama.cpp's
//!   generator, newer Unicode data), so codepoints assigned since may classify differently;
//! - a SentencePiece vocabulary without a byte token for some byte yields the unknown token (or
//!   nothing) where llama.cpp throws.

mod bpe;
mod error;
mod load;
mod pretok;
mod spm;
mod stream;
mod tiktoken;
mod unicode;
mod unicode_table;
mod wordpiece;
mod wordpiece_table;

pub use error::TokenizerError;
pub use stream::StreamDecoder;
pub use tiktoken::{CL100K_SPECIALS, MAX_RANK_FILE_BYTES, TiktokenVocab, UnknownId};
pub use wordpiece::WordPiece;

use bpe::Bpe;
use pretok::Pass;
use spm::Spm;

/// llama.cpp token attributes (`llama_token_attr`), a bit set.
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
}

#[derive(Debug)]
enum Model {
    Bpe { bpe: Bpe, passes: Vec<Pass> },
    Spm(Spm),
}

/// A tokenizer built from GGUF metadata.
#[derive(Debug)]
pub struct Tokenizer {
    model: Model,
    texts: Vec<String>,
    attrs: Vec<u16>,
    /// Bytes of each token as it appears in text (llama.cpp `token_to_piece(special = true)`),
    /// concatenated; `piece_ends[i]` is where token `i`'s bytes end.
    pieces: Vec<u8>,
    piece_ends: Vec<usize>,
    /// Control, user-defined and unknown tokens, longest text first.
    specials: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    eog: Vec<u32>,
}

enum Fragment {
    Text(usize, usize),
    Token(u32),
}

impl Tokenizer {
    /// Builds the tokenizer described by `g`'s `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &hearth_gguf::Gguf) -> Result<Self, TokenizerError> {
        load::load(g)
    }

    /// Token ids of `text`. `add_special` adds BOS/EOS as the model asks; `parse_special` lets
    /// control tokens' text (e.g. `<|im_start|>`) stand for those tokens. User-defined tokens are
    /// always matched, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let frags = self.partition(text, parse_special);
        if add_special
            && self.add_bos
            && let Some(b) = self.bos
        {
            out.push(b);
        }
        match &self.model {
            Model::Spm(spm) => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in &frags {
                    match *f {
                        Fragment::Text(a, b) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text.get(a..b).unwrap_or_default().chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm.encode(&buf, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(t) => {
                            out.push(t);
                            prev_special = true;
                        }
                    }
                }
            }
            Model::Bpe { bpe, passes } => {
                let mut words = Vec::new();
                for f in &frags {
                    match *f {
                        Fragment::Text(a, b) => {
                            let s = text.get(a..b).unwrap_or_default();
                            pretok::split(s, passes, &mut words);
                            for &(wa, wb) in &words {
                                bpe.encode_word(
                                    s.as_bytes().get(wa..wb).unwrap_or_default(),
                                    &mut out,
                                );
                            }
                        }
                        Fragment::Token(t) => out.push(t),
                    }
                }
            }
        }
        if add_special
            && self.add_eos
            && let Some(e) = self.eos
        {
            out.push(e);
        }
        out
    }

    /// llama.cpp `tokenizer_st_partition`: split special tokens' text out of `text`.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(0, text.len()));
        for &id in &self.specials {
            let a = self.attrs.get(id as usize).copied().unwrap_or(0);
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let Some(tt) = self.texts.get(id as usize) else {
                continue;
            };
            if tt.is_empty() || !frags.iter().any(|f| matches!(f, Fragment::Text(..))) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Text(mut a, b) => {
                        while let Some(m) = text.get(a..b).and_then(|s| s.find(tt.as_str())) {
                            let m = a + m;
                            if m > a {
                                next.push(Fragment::Text(a, m));
                            }
                            next.push(Fragment::Token(id));
                            a = m + tt.len();
                        }
                        if a < b {
                            next.push(Fragment::Text(a, b));
                        }
                    }
                    tok => next.push(tok),
                }
            }
            frags = next;
        }
        frags
    }

    /// Bytes of one token as it appears in text; control and unknown tokens' text only if
    /// `special`. Unknown ids give no bytes.
    pub fn token_bytes(&self, id: u32, special: bool) -> &[u8] {
        let i = id as usize;
        let a = self.attrs.get(i).copied().unwrap_or(0);
        if !special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return &[];
        }
        let start = match i.checked_sub(1) {
            None => 0,
            Some(p) => self.piece_ends.get(p).copied().unwrap_or(0),
        };
        let end = self.piece_ends.get(i).copied().unwrap_or(start);
        self.pieces.get(start..end).unwrap_or_default()
    }

    /// Text of `ids` as llama.cpp's `llama_detokenize(remove_special = false, unparse_special =
    /// special)` gives it: SentencePiece's leading space is removed, BPE models that ask for it
    /// get llama.cpp's `clean_up_tokenization_spaces`. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let mut buf = Vec::with_capacity(ids.len() * 4);
        let mut remove_space = self.add_space_prefix;
        for &id in ids {
            let mut piece = self.token_bytes(id, special);
            if remove_space && let Some(rest) = piece.strip_prefix(b" ") {
                piece = rest;
            }
            remove_space = false;
            buf.extend_from_slice(piece);
        }
        if self.clean_spaces {
            buf = clean_spaces(&buf);
        }
        match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// The token's text as stored in the vocabulary (GPT-2 printable form for `gpt2` models).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// End-of-generation ids, ascending: eos, eot, eom, FIM pad/repo/sep, and tokens llama.cpp
    /// treats as end of generation by their text (`<|eot_id|>`, `<|im_end|>`, `<|end|>`,
    /// `<end_of_turn>`, `<|endoftext|>`, `<EOT>`, ...).
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
}

/// llama.cpp's `clean_spaces` passes over detokenized text.
fn clean_spaces(t: &[u8]) -> Vec<u8> {
    // " ?", " !", " .", " ,"
    let mut a: Vec<u8> = Vec::with_capacity(t.len());
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t.get(i - 1) == Some(&b' ') && matches!(x, b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(x);
    }
    // " ' " -> "'" (llama.cpp zeroes the byte after the quote, so it never counts as a space)
    let mut b: Vec<u8> = Vec::with_capacity(a.len());
    let mut i = 0;
    while let Some(&x) = a.get(i) {
        if i > 0
            && x == b'\''
            && i + 1 < a.len()
            && a.get(i - 1) == Some(&b' ')
            && a.get(i + 1) == Some(&b' ')
        {
            b.pop();
            b.push(x);
            if let Some(z) = a.get_mut(i + 1) {
                *z = 0;
            }
            i += 2;
            continue;
        }
        b.push(x);
        i += 1;
    }
    // " 's", " 'm", " 're", " 've" -> no space
    let mut c: Vec<u8> = Vec::with_capacity(b.len());
    for (i, &x) in b.iter().enumerate() {
        if i > 0 && b.get(i - 1) == Some(&b' ') && x == b'\'' && i + 1 < b.len() {
            let x1 = b.get(i + 1).copied();
            let x2 = b.get(i + 2).copied();
            let drop = match x1 {
                Some(b's' | b'm') => true,
                Some(b'r' | b'v') => x2 == Some(b'e'),
                _ => false,
            };
            if drop {
                c.pop();
            }
        }
        c.push(x);
    }
    c
}

#[cfg(test)]
mod tests;
