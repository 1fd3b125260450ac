//! Byte-level BPE (GPT-2 style) with ranked merges, as llama.cpp's `llm_tokenizer_bpe_session`.
//!
//! Vocabulary and merges are stored in GPT-2's printable-unicode form; we decode them once to raw
//! bytes and run the merges on bytes, which is the same computation (the byte <-> unicode map is
//! a bijection and every initial symbol is one byte). Every string a merge can produce is
//! interned to a symbol id, so a merge lookup is one hash probe on a pair of ids.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::unicode::{byte_to_char, char_to_byte};

/// Decodes GPT-2 printable-unicode text to bytes; `None` if a character is outside the map.
#[cfg_attr(not(test), expect(dead_code, reason = "used by unit tests"))]
pub(crate) fn decode_mapped(s: &str) -> Option<Vec<u8>> {
    s.chars().map(char_to_byte).collect()
}

/// Appends the bytes GPT-2 printable-unicode `s` stands for; false if a character is outside the map.
pub(crate) fn decode_into(s: &str, out: &mut Vec<u8>) -> bool {
    for c in s.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => return false,
        }
    }
    true
}

const NONE: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct Bpe {
    /// (left symbol, right symbol) -> (rank, merged symbol)
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// symbol id -> token id (NONE when the symbol's text is not a token)
    sym_token: Vec<u32>,
    /// bytes -> symbol id, for every token's bytes and every merge's parts
    interned: HashMap<Box<[u8]>, u32>,
    ignore_merges: bool,
}

struct Sym {
    start: usize,
    len: usize,
    sym: u32,
    prev: usize,
    next: usize,
}

const END: usize = usize::MAX;

/// A candidate merge: (rank, left index, right index, left symbol, right symbol).
type Pair = (u32, usize, usize, u32, u32);

impl Bpe {
    pub(crate) fn new(tokens: &[String], merges: &[String], ignore_merges: bool) -> Self {
        // Every token's bytes and every merge's parts are interned; sym_token maps back to tokens.
        let cap = tokens.len() + merges.len() / 4 + 256;
        let mut interned: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(cap);
        let mut sym_token: Vec<u32> = Vec::with_capacity(cap);
        let mut intern = |b: &[u8], sym_token: &mut Vec<u32>| -> u32 {
            if let Some(&s) = interned.get(b) {
                return s;
            }
            let s = u32::try_from(sym_token.len()).unwrap_or(NONE);
            sym_token.push(NONE);
            interned.insert(b.into(), s);
            s
        };
        for b in 0..=255u8 {
            intern(&[b], &mut sym_token);
        }
        let mut buf: Vec<u8> = Vec::new();
        for (id, t) in tokens.iter().enumerate() {
            buf.clear();
            if let (true, Ok(id)) = (decode_into(t, &mut buf), u32::try_from(id)) {
                let s = intern(&buf, &mut sym_token);
                if let Some(slot) = sym_token.get_mut(s as usize)
                    && *slot == NONE
                {
                    *slot = id;
                }
            }
        }
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte.
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (Some(first), Some(second)) = (m.get(..pos), m.get(pos + 1..)) else {
                continue;
            };
            buf.clear();
            if !decode_into(first, &mut buf) {
                continue;
            }
            let split = buf.len();
            if !decode_into(second, &mut buf) || split == 0 || split == buf.len() {
                continue;
            }
            let Ok(rank) = u32::try_from(rank) else { break };
            let (a, b) = buf.split_at(split);
            let sa = intern(a, &mut sym_token);
            let sb = intern(b, &mut sym_token);
            let sab = intern(&buf, &mut sym_token);
            table.entry((sa, sb)).or_insert((rank, sab));
        }
        Bpe {
            merges: table,
            sym_token,
            interned,
            ignore_merges,
        }
    }

    fn token_of(&self, sym: u32) -> Option<u32> {
        self.sym_token
            .get(sym as usize)
            .copied()
            .filter(|&t| t != NONE)
    }

    /// Token for one byte (`text_to_token` of its printable form).
    fn byte_token(&self, b: u8) -> Option<u32> {
        self.token_of(u32::from(b))
    }

    /// Appends the tokens of one pre-tokenized word.
    pub(crate) fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges
            && let Some(id) = self.interned.get(word).and_then(|&s| self.token_of(s))
        {
            out.push(id);
            return;
        }
        let n = word.len();
        let mut syms: Vec<Sym> = word
            .iter()
            .enumerate()
            .map(|(i, &b)| Sym {
                start: i,
                len: 1,
                sym: u32::from(b),
                prev: if i == 0 { END } else { i - 1 },
                next: if i + 1 == n { END } else { i + 1 },
            })
            .collect();
        // (rank, left index) ascending; plus the symbol ids the pair was made of.
        let mut heap: BinaryHeap<Reverse<Pair>> = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: usize, r: usize| {
            let (Some(ls), Some(rs)) = (syms.get(l), syms.get(r)) else {
                return;
            };
            if let Some(&(rank, _)) = self.merges.get(&(ls.sym, rs.sym)) {
                heap.push(Reverse((rank, l, r, ls.sym, rs.sym)));
            }
        };
        for i in 1..n {
            push(&mut heap, &syms, i - 1, i);
        }
        while let Some(Reverse((_, l, r, lsym, rsym))) = heap.pop() {
            let (Some(ls), Some(rs)) = (syms.get(l), syms.get(r)) else {
                continue;
            };
            if ls.len == 0 || rs.len == 0 || ls.sym != lsym || rs.sym != rsym || ls.next != r {
                continue;
            }
            let Some(&(_, merged)) = self.merges.get(&(lsym, rsym)) else {
                continue;
            };
            let (rlen, rnext) = (rs.len, rs.next);
            if let Some(rs) = syms.get_mut(r) {
                rs.len = 0;
            }
            let lprev = match syms.get_mut(l) {
                Some(ls) => {
                    ls.len += rlen;
                    ls.sym = merged;
                    ls.next = rnext;
                    ls.prev
                }
                None => continue,
            };
            if let Some(nx) = syms.get_mut(rnext) {
                nx.prev = l;
            }
            if lprev != END {
                push(&mut heap, &syms, lprev, l);
            }
            if rnext != END {
                push(&mut heap, &syms, l, rnext);
            }
        }
        let mut i = 0;
        while let Some(s) = syms.get(i) {
            if s.len > 0 {
                match self.token_of(s.sym) {
                    Some(t) => out.push(t),
                    None => {
                        let bytes = word.get(s.start..s.start + s.len).unwrap_or_default();
                        out.extend(bytes.iter().filter_map(|&b| self.byte_token(b)));
                    }
                }
            }
            i = s.next;
        }
    }
}

/// GPT-2 printable form of raw bytes (used by tests and for documentation of the mapping).
#[cfg_attr(not(test), expect(dead_code, reason = "used by unit tests"))]
pub(crate) fn encode_mapped(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_to_char(b)).collect()
}
