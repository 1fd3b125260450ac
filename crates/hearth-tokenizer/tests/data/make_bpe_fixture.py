#!/usr/bin/env python3
"""Generate byte-level BPE fixtures: bpe-<pre>.gguf and bpe-<pre>.jsonl for llama-bpe and qwen2.

Generated once with Hugging Face `tokenizers` (0.23.3), the independent reference for the `gpt2`
tokenizer path with Llama 3's and Qwen2's pre-tokenizers:

1. Train a tiny byte-level BPE (vocab 1000) whose pre-tokenizer is the model's tokenizer.json
   regex (Split, isolated) followed by ByteLevel, as Llama 3 and Qwen2 ship it; Llama 3's model
   sets `ignore_merges`, as its tokenizer.json does.
2. Write vocabulary, merges and token types (added special tokens are control) into a GGUF with
   the `gguf` package (tokenizer.ggml.model = "gpt2", tokenizer.ggml.pre = the name llama.cpp's
   converter gives these models).
3. Encode the test texts with `tokenizers` (special tokens split out, as llama.cpp's
   parse_special) and write `{text, ids}` rows.

Run:  /tmp/spmvenv/bin/pip install tokenizers gguf
      cd crates/hearth-tokenizer/tests/data && /tmp/spmvenv/bin/python make_bpe_fixture.py
"""
import json
import os

import gguf
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"]

TRAIN = [
    "Once upon a time there was a little robot who wanted to learn how to paint.",
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.",
    "In 1492, Columbus sailed the ocean blue. In 1969, 12345 people walked on 3.14159 moons.",
    "Hello world! Hello there, world. How are you today? I'm fine, you're kind, we'll see.",
    "def add(a, b):\n    return a + b\n\nfor i in range(10):\n\tprint(i)\r\n",
    "Café, naïve, résumé and façade. Straße und Größe. Ελληνικά και русский текст. 日本語と中文。",
    "emoji 😀🎉👍🏽 and symbols ∑∫√∞ ≈≠≤≥ → ← ½ ²   spaced    out   text  ",
    "DON'T SHOUT, I'VE GOT IT. It's 5:30pm — time for tea… “smart quotes” and ‘single’.",
]

TEXTS = [
    "",
    " ",
    "   ",
    "\n\n\n",
    "Hello world",
    " Hello world",
    "hello   world  ",
    "I'm here; you're there. We'll see, won't we? DON'T SHOUT, I'VE GOT IT",
    "1234567890 3.14159 12,345,678.90 2026-11-22",
    "café naïve résumé façade Straße Größe",
    "Ελληνικά κείμενα, русский текст, 日本語のテキスト、中文文本",
    "emoji 😀🎉👍🏽 family 👨\u200d👩\u200d👧\u200d👦",
    "def add(a, b):\n    return a + b\n",
    "line\r\nwindows\r\n\r\n  indented\n\t\ttabs",
    "a\u00a0b\u2009c\u3000d",
    "unseenwordzzqx qwxzv pneumonoultramicroscopic",
    "<|begin_of_text|>Hello<|eot_id|>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text with <|end_of_text|> inside",
    "Once upon a time, there was a little robot who wanted to learn how to paint.",
]


def build(pre_name, regex, ignore_merges, here):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(TRAIN * 20, trainer)
    tok.add_special_tokens(SPECIALS)

    model = json.loads(tok.to_str())["model"]
    vocab = tok.get_vocab(with_added_tokens=True)
    n = len(vocab)
    tokens = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    assert all(t is not None for t in tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens]

    w = gguf.GGUFWriter(os.path.join(here, f"bpe-{pre_name}.gguf"), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre_name)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|begin_of_text|>"])
    w.add_eos_token_id(vocab["<|end_of_text|>"])
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    with open(os.path.join(here, f"bpe-{pre_name}.jsonl"), "w", encoding="utf-8") as f:
        for text in TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    build("llama-bpe", LLAMA3, True, here)
    build("qwen2", QWEN2, False, here)


if __name__ == "__main__":
    main()
