//! A tiktoken rank file (`cl100k_base.tiktoken`) read as hostile input, for decoding ids of that
//! encoding back to text. OpenAI's API defines token-array inputs (e.g. on `/v1/embeddings`) in
//! its own encoding, which is how clients such as LangChain's `OpenAIEmbeddings` send them.
//!
//! The file is one `BASE64 RANK` pair per line; a token's rank is its id. Decoding concatenates
//! the tokens' bytes (byte-level: a token may hold part of a UTF-8 character) and reads them as
//! UTF-8, invalid sequences becoming U+FFFD as tiktoken's `decode(errors="replace")` does.

use crate::TokenizerError;

/// Largest rank file accepted (cl100k_base is 1.7 MB).
pub const MAX_RANK_FILE_BYTES: usize = 16 << 20;
/// Largest id accepted in a rank file (cl100k's largest is 100 255).
const MAX_RANK: usize = 1 << 20;
/// Longest token accepted, in bytes (cl100k's longest is 128).
const MAX_TOKEN_BYTES: usize = 1024;

/// `cl100k_base`'s special tokens, which are not in its rank file (from tiktoken's
/// `openai_public.py`).
pub const CL100K_SPECIALS: &[(&str, u32)] = &[
    ("<|endoftext|>", 100_257),
    ("<|fim_prefix|>", 100_258),
    ("<|fim_middle|>", 100_259),
    ("<|fim_suffix|>", 100_260),
    ("<|endofprompt|>", 100_276),
];

/// The ids of one tiktoken encoding, each with its bytes.
#[derive(Debug, Clone)]
pub struct TiktokenVocab {
    tokens: Vec<Option<Box<[u8]>>>,
}

/// An id that names no token of the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token id {0} is not in the encoding")]
pub struct UnknownId(pub u32);

fn bad(problem: String) -> TokenizerError {
    TokenizerError::bad("tiktoken rank file", problem)
}

impl TiktokenVocab {
    /// Parse a rank file's text and add `specials` (text, id). Every id may appear once.
    pub fn parse(text: &str, specials: &[(&str, u32)]) -> Result<Self, TokenizerError> {
        if text.len() > MAX_RANK_FILE_BYTES {
            return Err(bad(format!("{} bytes is too large", text.len())));
        }
        let mut tokens: Vec<Option<Box<[u8]>>> = Vec::new();
        let put = |tokens: &mut Vec<Option<Box<[u8]>>>,
                   id: usize,
                   bytes: Vec<u8>,
                   line: usize|
         -> Result<(), TokenizerError> {
            if id > MAX_RANK {
                return Err(bad(format!("line {line}: rank {id} is too large")));
            }
            if tokens.len() <= id {
                tokens.resize(id + 1, None);
            }
            match &mut tokens[id] {
                Some(_) => Err(bad(format!("line {line}: rank {id} appears twice"))),
                slot => {
                    *slot = Some(bytes.into_boxed_slice());
                    Ok(())
                }
            }
        };
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.is_empty() {
                continue;
            }
            let Some((b64, rank)) = line.split_once(' ') else {
                return Err(bad(format!("line {line_no}: expected `BASE64 RANK`")));
            };
            let bytes = base64_decode(b64)
                .ok_or_else(|| bad(format!("line {line_no}: the token is not valid base64")))?;
            if bytes.is_empty() || bytes.len() > MAX_TOKEN_BYTES {
                return Err(bad(format!(
                    "line {line_no}: a token of {} bytes",
                    bytes.len()
                )));
            }
            let rank: usize = rank
                .parse()
                .map_err(|_| bad(format!("line {line_no}: the rank is not a number")))?;
            put(&mut tokens, rank, bytes, line_no)?;
        }
        if tokens.is_empty() {
            return Err(bad("no tokens".to_owned()));
        }
        for (text, id) in specials {
            put(&mut tokens, *id as usize, text.as_bytes().to_vec(), 0)?;
        }
        Ok(Self { tokens })
    }

    /// How many ids the encoding has (gaps included).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The text of `ids`; the first id the encoding lacks is the error.
    pub fn decode(&self, ids: &[u32]) -> Result<String, UnknownId> {
        let mut bytes = Vec::new();
        for &id in ids {
            let token = self
                .tokens
                .get(id as usize)
                .and_then(Option::as_deref)
                .ok_or(UnknownId(id))?;
            bytes.extend_from_slice(token);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Standard base64 (RFC 4648 §4) with `=` padding required; `None` for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let last = s.len() / 4 - 1;
    for (i, q) in s.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i != last) {
            return None;
        }
        let mut v = 0u32;
        for &c in &q[..4 - pad] {
            v = (v << 6) | value(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}
