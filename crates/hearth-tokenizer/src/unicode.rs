//! Codepoint classification as llama.cpp's `unicode.cpp` does it, and GPT-2's byte <-> unicode map.

use crate::unicode_table::RANGES;

pub(crate) const NUMBER: u16 = 0x0002;
pub(crate) const LETTER: u16 = 0x0004;
pub(crate) const PUNCTUATION: u16 = 0x0020;
pub(crate) const CATEGORIES: u16 = 0x00FF;
pub(crate) const WHITESPACE: u16 = 0x0100;

/// Flags of one codepoint (llama.cpp `unicode_cpt_flags_from_cpt`).
pub(crate) fn flags(c: char) -> u16 {
    let cp = u32::from(c);
    let i = RANGES.partition_point(|&(start, _)| start <= cp);
    // RANGES[0] starts at 0, so i >= 1.
    RANGES.get(i.wrapping_sub(1)).map_or(0, |&(_, f)| f)
}

/// GPT-2's printable codepoint for each byte.
pub(crate) fn byte_to_char(b: u8) -> char {
    BYTE_CHARS.0[usize::from(b)]
}

/// The byte a GPT-2 printable codepoint stands for.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let i = usize::try_from(u32::from(c)).ok()?;
    match CHAR_BYTES.0.get(i) {
        Some(&v) if v >= 0 => u8::try_from(v).ok(),
        _ => None,
    }
}

struct ByteChars([char; 256]);
struct CharBytes([i16; 324]);

const fn direct(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
}

static BYTE_CHARS: ByteChars = {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0u32;
    while b < 256 {
        let cp = if direct(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        out[b as usize] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    ByteChars(out)
};

static CHAR_BYTES: CharBytes = {
    let mut out = [-1i16; 324];
    let mut b = 0usize;
    while b < 256 {
        out[BYTE_CHARS.0[b] as usize] = b as i16;
        b += 1;
    }
    CharBytes(out)
};
