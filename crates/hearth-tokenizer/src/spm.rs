//! SentencePiece BPE as llama.cpp's `llm_tokenizer_spm_session`: start from UTF-8 characters,
//! repeatedly merge the adjacent pair whose concatenation is the highest-scoring token (leftmost
//! on ties); characters left without a token fall back to `<0xXX>` byte tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

#[derive(Debug)]
pub(crate) struct Spm {
    by_text: HashMap<Box<[u8]>, u32>,
    scores: Vec<f32>,
    byte_tokens: Vec<Option<u32>>,
    unk: Option<u32>,
}

struct Sym {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const END: usize = usize::MAX;

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Higher score first, then the leftmost pair.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

impl Spm {
    pub(crate) fn new(
        by_text: HashMap<Box<[u8]>, u32>,
        scores: Vec<f32>,
        unk: Option<u32>,
    ) -> Self {
        let mut byte_tokens = vec![None; 256];
        for (b, slot) in (0..=255u8).zip(byte_tokens.iter_mut()) {
            let hex = format!("<0x{b:02X}>");
            *slot = by_text
                .get(hex.as_bytes())
                .or_else(|| by_text.get(&[b][..]))
                .copied();
        }
        Spm {
            by_text,
            scores,
            byte_tokens,
            unk,
        }
    }

    pub(crate) fn byte_token(&self, b: u8) -> Option<u32> {
        self.byte_tokens.get(usize::from(b)).copied().flatten()
    }

    /// Appends the tokens of `text` (spaces already escaped to U+2581).
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let bytes = text.as_bytes();
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (i, (off, c)) in text.char_indices().enumerate() {
            let len = c.len_utf8();
            syms.push(Sym {
                start: off,
                len,
                prev: if i == 0 { END } else { i - 1 },
                next: if off + len == bytes.len() { END } else { i + 1 },
            });
        }
        let mut heap = BinaryHeap::new();
        for i in 1..syms.len() {
            self.try_add(&syms, bytes, i - 1, i, &mut heap);
        }
        while let Some(bg) = heap.pop() {
            let (Some(l), Some(r)) = (syms.get(bg.left), syms.get(bg.right)) else {
                continue;
            };
            if l.len == 0 || r.len == 0 || l.len + r.len != bg.size {
                continue;
            }
            let (rlen, rnext) = (r.len, r.next);
            if let Some(r) = syms.get_mut(bg.right) {
                r.len = 0;
            }
            let lprev = match syms.get_mut(bg.left) {
                Some(l) => {
                    l.len += rlen;
                    l.next = rnext;
                    l.prev
                }
                None => continue,
            };
            if let Some(n) = syms.get_mut(rnext) {
                n.prev = bg.left;
            }
            if lprev != END {
                self.try_add(&syms, bytes, lprev, bg.left, &mut heap);
            }
            if rnext != END {
                self.try_add(&syms, bytes, bg.left, rnext, &mut heap);
            }
        }
        let mut i = if syms.is_empty() { END } else { 0 };
        while let Some(s) = syms.get(i) {
            let piece = bytes.get(s.start..s.start + s.len).unwrap_or_default();
            match self.by_text.get(piece) {
                Some(&t) => out.push(t),
                None => {
                    for &b in piece {
                        if let Some(t) = self.byte_token(b).or(self.unk) {
                            out.push(t);
                        }
                    }
                }
            }
            i = s.next;
        }
    }

    fn try_add(
        &self,
        syms: &[Sym],
        bytes: &[u8],
        l: usize,
        r: usize,
        heap: &mut BinaryHeap<Bigram>,
    ) {
        let (Some(ls), Some(rs)) = (syms.get(l), syms.get(r)) else {
            return;
        };
        let size = ls.len + rs.len;
        let Some(text) = bytes.get(ls.start..ls.start + size) else {
            return;
        };
        if let Some(&tok) = self.by_text.get(text) {
            let score = self.scores.get(tok as usize).copied().unwrap_or(0.0);
            heap.push(Bigram {
                score,
                left: l,
                right: r,
                size,
            });
        }
    }
}
