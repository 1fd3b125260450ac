//! Pre-tokenizers: split text into words before BPE, as llama.cpp's `unicode_regex_split` does.
//!
//! llama.cpp hand-writes the GPT-2 and Llama 3 regexes and runs the others through `std::regex` on
//! a "collapsed" text (each non-ASCII codepoint replaced by a byte naming its category). Every
//! regex in a chain splits each piece the previous one produced; text between matches is a piece
//! too. The passes below reproduce those semantics by hand.

use crate::unicode::{CATEGORIES, LETTER, NUMBER, PUNCTUATION, WHITESPACE, flags};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with `D` = 3 (Llama 3) or 1 (Qwen2).
    Llama3 { digits: usize },
    /// `\p{N}` (one per match) or `\p{N}+`.
    Numbers { run: bool },
    /// `[\p{P}\$\+<=>\^~\|]+`
    DefaultPunct,
    /// `[0-9][0-9][0-9]`
    DigitTriples,
}

struct Cpts {
    chars: Vec<char>,
    flags: Vec<u16>,
}

impl Cpts {
    fn get(&self, pos: usize, end: usize) -> Option<char> {
        if pos < end {
            self.chars.get(pos).copied()
        } else {
            None
        }
    }
    fn fl(&self, pos: usize, end: usize) -> u16 {
        if pos < end {
            self.flags.get(pos).copied().unwrap_or(0)
        } else {
            0
        }
    }
}

/// Splits `text` into words; returns byte ranges into `text`, in order, covering all of it.
pub(crate) fn split(text: &str, passes: &[Pass], out: &mut Vec<(usize, usize)>) {
    out.clear();
    if text.is_empty() {
        return;
    }
    let mut byte_offs = Vec::with_capacity(text.len() + 1);
    let mut chars = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        byte_offs.push(i);
        chars.push(c);
    }
    byte_offs.push(text.len());
    let cp = Cpts {
        flags: chars.iter().map(|&c| flags(c)).collect(),
        chars,
    };
    let mut pieces = vec![(0usize, cp.chars.len())];
    let mut next = Vec::with_capacity(cp.chars.len() / 2 + 1);
    for pass in passes {
        next.clear();
        for &(ini, end) in &pieces {
            match *pass {
                Pass::Gpt2 => gpt2(&cp, ini, end, &mut next),
                Pass::Llama3 { digits } => llama3(&cp, ini, end, digits, &mut next),
                Pass::Numbers { run } => {
                    class_split(&cp, ini, end, run, is_number_class, &mut next)
                }
                Pass::DefaultPunct => class_split(&cp, ini, end, true, is_default_punct, &mut next),
                Pass::DigitTriples => digit_triples(&cp, ini, end, &mut next),
            }
        }
        std::mem::swap(&mut pieces, &mut next);
    }
    out.extend(
        pieces
            .iter()
            .filter_map(|&(a, b)| Some((*byte_offs.get(a)?, *byte_offs.get(b)?))),
    );
}

struct Emit<'a> {
    prev: usize,
    out: &'a mut Vec<(usize, usize)>,
}

impl Emit<'_> {
    fn add(&mut self, end: usize) {
        if end > self.prev {
            self.out.push((self.prev, end));
        }
        self.prev = end;
    }
}

fn contraction(cp: &Cpts, pos: usize, end: usize, fold: bool) -> Option<usize> {
    let low = |c: Option<char>| c.map(|c| if fold { c.to_ascii_lowercase() } else { c });
    if cp.get(pos, end) != Some('\'') || pos + 1 >= end {
        return None;
    }
    let n1 = low(cp.get(pos + 1, end));
    if matches!(n1, Some('s' | 't' | 'm' | 'd')) {
        return Some(pos + 2);
    }
    if pos + 2 < end {
        let n2 = low(cp.get(pos + 2, end));
        if matches!(
            (n1, n2),
            (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
        ) {
            return Some(pos + 3);
        }
    }
    None
}

fn gpt2(cp: &Cpts, ini: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let mut e = Emit { prev: ini, out };
    let mut pos = ini;
    while pos < end {
        let cpt = cp.get(pos, end);
        let f = cp.fl(pos, end);
        if let Some(p) = contraction(cp, pos, end, false) {
            pos = p;
            e.add(pos);
            continue;
        }
        let space = cpt == Some(' ');
        let f2 = if space { cp.fl(pos + 1, end) } else { f };
        if f2 & LETTER != 0 {
            pos += usize::from(space);
            while cp.fl(pos, end) & LETTER != 0 {
                pos += 1;
            }
            e.add(pos);
            continue;
        }
        if f2 & NUMBER != 0 {
            pos += usize::from(space);
            while cp.fl(pos, end) & NUMBER != 0 {
                pos += 1;
            }
            e.add(pos);
            continue;
        }
        let other = |f: u16| f & (WHITESPACE | LETTER | NUMBER) == 0 && f != 0;
        if other(f2) {
            pos += usize::from(space);
            while other(cp.fl(pos, end)) {
                pos += 1;
            }
            e.add(pos);
            continue;
        }
        let mut nws = 0;
        while cp.fl(pos + nws, end) & WHITESPACE != 0 {
            nws += 1;
        }
        if nws > 1 && pos + nws < end {
            pos += nws - 1;
            e.add(pos);
            continue;
        }
        if nws > 0 {
            pos += nws;
            e.add(pos);
            continue;
        }
        pos += 1;
        e.add(pos);
    }
}

fn llama3(cp: &Cpts, ini: usize, end: usize, digits: usize, out: &mut Vec<(usize, usize)>) {
    let mut e = Emit { prev: ini, out };
    let mut pos = ini;
    while pos < end {
        let cpt = cp.get(pos, end);
        let f = cp.fl(pos, end);
        if let Some(p) = contraction(cp, pos, end, true) {
            pos = p;
            e.add(pos);
            continue;
        }
        let crlf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
        if !(crlf(cpt) || f & NUMBER != 0) && (f & LETTER != 0 || cp.fl(pos + 1, end) & LETTER != 0)
        {
            pos += 1;
            while cp.fl(pos, end) & LETTER != 0 {
                pos += 1;
            }
            e.add(pos);
            continue;
        }
        if f & NUMBER != 0 {
            let mut start = pos;
            while cp.fl(pos, end) & NUMBER != 0 {
                pos += 1;
                if pos - start >= digits {
                    e.add(pos);
                    start = pos;
                }
            }
            e.add(pos);
            continue;
        }
        let space = cpt == Some(' ');
        let f2 = if space { cp.fl(pos + 1, end) } else { f };
        let other = |f: u16| f & (WHITESPACE | LETTER | NUMBER) == 0 && f != 0;
        if f2 & (WHITESPACE | LETTER | NUMBER) == 0 && f != 0 {
            pos += usize::from(space);
            while other(cp.fl(pos, end)) {
                pos += 1;
            }
            while crlf(cp.get(pos, end)) {
                pos += 1;
            }
            e.add(pos);
            continue;
        }
        let mut nws = 0;
        let mut last_crlf_end = 0;
        while cp.fl(pos + nws, end) & WHITESPACE != 0 {
            if crlf(cp.get(pos + nws, end)) {
                last_crlf_end = pos + nws + 1;
            }
            nws += 1;
        }
        if last_crlf_end > 0 {
            pos = last_crlf_end;
            e.add(pos);
            continue;
        }
        if nws > 1 && pos + nws < end {
            pos += nws - 1;
            e.add(pos);
            continue;
        }
        if nws > 0 {
            pos += nws;
            e.add(pos);
            continue;
        }
        pos += 1;
        e.add(pos);
    }
}

/// `\p{N}` on llama.cpp's collapsed text: ASCII digits, or a non-ASCII, non-space codepoint
/// whose only category is "number".
fn is_number_class(c: char, f: u16) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        f & WHITESPACE == 0 && f & CATEGORIES == NUMBER
    }
}

/// `[\p{P}\$\+<=>\^~\|]` on llama.cpp's collapsed text.
fn is_default_punct(c: char, f: u16) -> bool {
    if c.is_ascii() {
        matches!(c, '!'..='#' | '%'..='*' | ','..='/' | ':'..=';' | '?'..='@' | '['..=']' | '_' | '{' | '}')
            || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
    } else {
        f & WHITESPACE == 0 && f & CATEGORIES == PUNCTUATION
    }
}

/// A character class regex, one codepoint per match or greedy runs; gaps become pieces.
fn class_split(
    cp: &Cpts,
    ini: usize,
    end: usize,
    run: bool,
    class: fn(char, u16) -> bool,
    out: &mut Vec<(usize, usize)>,
) {
    let mut e = Emit { prev: ini, out };
    let is = |p: usize| cp.get(p, end).is_some_and(|c| class(c, cp.fl(p, end)));
    let mut pos = ini;
    while pos < end {
        if is(pos) {
            e.add(pos);
            pos += 1;
            while run && is(pos) {
                pos += 1;
            }
            e.add(pos);
        } else {
            pos += 1;
        }
    }
    e.add(end);
}

fn digit_triples(cp: &Cpts, ini: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let mut e = Emit { prev: ini, out };
    let d = |p: usize| cp.get(p, end).is_some_and(|c| c.is_ascii_digit());
    let mut pos = ini;
    while pos < end {
        if d(pos) && d(pos + 1) && d(pos + 2) {
            e.add(pos);
            pos += 3;
            e.add(pos);
        } else {
            pos += 1;
        }
    }
    e.add(end);
}
