//! Streaming detokenization that never emits half a UTF-8 character.

use crate::Tokenizer;

/// Turns token ids into text one at a time, holding back bytes of a character that is not yet
/// complete. The concatenation of everything [`push`](Self::push) and [`finish`](Self::finish)
/// return equals `String::from_utf8_lossy` of all the tokens' bytes ([`Tokenizer::token_bytes`]),
/// which is how llama.cpp's server streams (no leading-space removal or space clean-up).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    special: bool,
}

impl StreamDecoder {
    /// A decoder that leaves out control tokens' text.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that includes control tokens' text when `special`.
    pub fn with_special(special: bool) -> Self {
        StreamDecoder {
            pending: Vec::new(),
            special,
        }
    }

    /// Adds one token; returns the text it completes (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        let bytes = tok.token_bytes(id, self.special);
        self.push_bytes(bytes)
    }

    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(good));
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = bad.get(n..).unwrap_or_default();
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Flushes held-back bytes (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
