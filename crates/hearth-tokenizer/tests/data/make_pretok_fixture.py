#!/usr/bin/env python3
"""Generate pretok.jsonl: pre-tokenizer splits made by a real regex engine.

Generated once with Python's `regex` package from the pre-tokenizer regexes as the models'
tokenizer.json files state them (the independent reference for Hearth's hand-written splitters).
A chain of regexes splits the way llama.cpp's `unicode_regex_split` does: each regex splits every
piece the previous one produced, and text between matches is a piece too.

Run:  /tmp/spmvenv/bin/pip install regex && /tmp/spmvenv/bin/python make_pretok_fixture.py
"""
import json
import os

import regex

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

CHAINS = {
    "gpt-2": [GPT2],
    "llama-bpe": [LLAMA3],
    "qwen2": [QWEN2],
    "smollm": [r"\p{N}", GPT2],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
}

TEXTS = [
    "Hello world",
    " Hello  world  ",
    "I'm here; you're there. We'll see, won't we? DON'T SHOUT, I'VE GOT IT",
    "12345 3.14159 1,000,000 2026-11-22T03:25:33Z",
    "a\n\nb \n c\r\n\r\nd   \n\t\te",
    "trailing spaces   ",
    "   leading",
    "café naïve Größe Ελληνικά русский",
    "日本語のテキストです。中文文本",
    "emoji 😀🎉👍🏽 family 👨\u200d👩\u200d👧\u200d👦 flag 🇫🇷",
    "∑∫√∞≈≠≤≥ ±×÷ → ← ½ ² Ⅷ ٣",
    "a\u00a0b\u2009c\u200bd\u3000e",
    "!!!???...,,,;;; $100 +7 <a>=b ^~| `x`",
    "def add(a, b):\n    return a + b\n",
    "fn main() {\n    println!(\"hi {}\", 1 + 2);\n}\n",
    "x'y 's 'S 'll 'LL 'Re '",
    "\x00 nul \x07 bell \x1f unit",
    "mixed123numbers456 and 7890123 digits",
    "\U000aadbb private \ue000 use \U0010fffd",
]


def split(text, chain):
    pieces = [text]
    for rx in chain:
        r = regex.compile(rx)
        out = []
        for p in pieces:
            last = 0
            for m in r.finditer(p):
                if m.start() > last:
                    out.append(p[last:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                last = m.end()
            if last < len(p):
                out.append(p[last:])
        pieces = out
    return pieces


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "pretok.jsonl"), "w", encoding="utf-8") as f:
        for pre, chain in CHAINS.items():
            for text in TEXTS:
                row = {"pre": pre, "text": text, "words": split(text, chain)}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
