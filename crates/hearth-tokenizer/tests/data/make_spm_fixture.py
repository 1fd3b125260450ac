#!/usr/bin/env python3
"""Generate the SentencePiece fixture: spm-bpe.gguf and spm-bpe.jsonl.

Generated once with the `sentencepiece` package, the independent reference for the `llama`
(SentencePiece BPE) tokenizer path; Hearth's tests only read the output, never regenerate it.

1. Train a tiny BPE SentencePiece model (model_type=bpe, byte_fallback, vocab 800) on the
   training text below, with Llama 2's normalisation settings (identity normalisation, no
   collapsing of whitespace, dummy space prefix, digits split).
2. Write its vocabulary (pieces, scores, token types as llama.cpp's converter assigns them) into
   a GGUF with the `gguf` package's GGUFWriter (tokenizer.ggml.model = "llama").
3. Encode the test texts with sentencepiece itself and write `{text, add_special, ids}` rows
   (`add_special` rows are sentencepiece's ids with the BOS id in front, as Llama 2 does).

Known differences between llama.cpp and sentencepiece, which the texts avoid or mirror:
- llama.cpp adds the dummy-prefix space to every text fragment that follows a special token, and
  ignores `remove_extra_whitespaces`/normalisation rules (Llama 2 uses identity anyway);
- llama.cpp lets merges form any vocabulary entry (control and byte pieces too), sentencepiece only
  normal ones; no test text spells a control or byte piece.

Run:  python3 -m venv /tmp/spmvenv && /tmp/spmvenv/bin/pip install sentencepiece gguf
      cd crates/hearth-tokenizer/tests/data && /tmp/spmvenv/bin/python make_spm_fixture.py
"""
import json
import os
import tempfile

import sentencepiece as spm
import gguf

TRAIN = """
Once upon a time there was a little robot who wanted to learn how to paint.
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.
Photosynthesis converts light energy into chemical energy stored in glucose.
In 1492, Columbus sailed the ocean blue. In 1969, people walked on the moon.
Hello world! Hello there, world. How are you today? I am fine, thank you.
She sells sea shells by the sea shore. Peter Piper picked a peck of pickled peppers.
def add(a, b): return a + b
for i in range(10): print(i)
    return a + b  # indented,  with  double  spaces
        deeper    indentation    here
The capital of France is Paris. The capital of Germany is Berlin.
Machine learning models learn patterns from data and make predictions.
A tokenizer splits text into pieces; each piece has an id in the vocabulary.
Café, naïve, résumé and façade are French words used in English.
Straße und Größe sind deutsche Wörter. Ελληνικά και русский текст.
Weather today: sunny with a chance of rain in the afternoon and evening.
""".strip().splitlines()

TEXTS = [
    "",
    " ",
    "  ",
    "Hello",
    "Hello world",
    " Hello world",
    "  leading spaces",
    "trailing spaces   ",
    "multiple   spaces   inside",
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little robot.",
    "line one\nline two\n\nline four",
    "tab\tseparated\tvalues",
    "café naïve résumé façade",
    "Straße Größe Übermaß",
    "Ελληνικά κείμενα",
    "Русский текст",
    "日本語のテキスト",
    "中文文本测试",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧‍👦",
    "∑∫√∞ ≈≠≤≥ ±×÷",
    "1234567890 3.14159",
    "def add(a, b):\n    return a + b\n",
    "unknownwordxyzzy qwxzv",
    "aaaaaaaaaaaaaaaaaaaaaaaa",
    "MiXeD CaSe WoRdS",
    "I'm here; you're there.",
    "\u00a0non-breaking\u2009thin space",
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            for _ in range(20):
                for line in TRAIN:
                    f.write(line + "\n")
        prefix = os.path.join(tmp, "m")
        spm.SentencePieceTrainer.train(
            input=corpus,
            model_prefix=prefix,
            model_type="bpe",
            vocab_size=800,
            byte_fallback=True,
            character_coverage=1.0,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            split_digits=True,
            allow_whitespace_only_pieces=True,
            bos_id=1,
            eos_id=2,
            unk_id=0,
            pad_id=-1,
            minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")

    n = sp.get_piece_size()
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_unused(i):
            types.append(gguf.TokenType.UNUSED)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)

    w = gguf.GGUFWriter(os.path.join(here, "spm-bpe.gguf"), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    with open(os.path.join(here, "spm-bpe.jsonl"), "w", encoding="utf-8") as f:
        for text in TEXTS:
            ids = sp.encode(text)
            f.write(json.dumps({"text": text, "add_special": False, "ids": ids}, ensure_ascii=False) + "\n")
            f.write(json.dumps({"text": text, "add_special": True, "ids": [sp.bos_id()] + ids}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
