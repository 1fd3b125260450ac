#!/usr/bin/env python3
"""Measure llama.cpp (llama-cpp-python) prefill and decode speed, for comparison with Hearth.

Usage (stable CLI; `hearth bench` calls it):
    peer_speed.py MODEL [--threads N] [--prompt-tokens P] [--gen-tokens G] [--rounds R]
defaults: --threads 1 --prompt-tokens 128 --gen-tokens 64 --rounds 3

Output (stable): exactly one JSON line on stdout, nothing else there:
    {"engine": "llama.cpp", "threads": N, "prefill_tps": float, "decode_tps": float,
     "prompt_tokens": P, "gen_tokens": G, "rounds": R, "llama_cpp_python": "0.3.36",
     "prefill_tps_rounds": [...], "decode_tps_rounds": [...], "loadavg_1m_after": float}
Consumers must rely only on engine, threads, prefill_tps and decode_tps; the other keys are
informational and may grow. Diagnostics go to stderr. Exit 0 on success, 2 on bad usage.

What is measured, per round (KV cache emptied before each round):
- prefill: wall time of one llama_decode of the whole P-token prompt in a single batch
  (n_batch = n_ubatch >= P), logits for the last position only; prefill_tps = P / time.
- decode: G greedy steps after the prefill; each step takes the argmax of the current logits
  and decodes that one token. decode_tps = G / total time of the G steps. End-of-generation
  is ignored so every round decodes exactly G tokens.
One unmeasured warm-up round runs first (page faults, thread pool start, caches); the figures
are the medians over R measured rounds. n_threads = n_threads_batch = N. The prompt is a fixed
English text tokenized by the model (BOS first), repeated/truncated to exactly P tokens, so
runs are comparable across engines that read the same token ids.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

PROMPT_TEXT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based ink and a wooden screw press into a system that could "
    "produce books quickly and cheaply. Within a few decades presses spread across Europe, and the "
    "number of books in circulation grew from thousands to millions. Scholars could compare texts, "
    "correct errors and share discoveries far faster than before, which helped to drive the "
    "Renaissance, the Reformation and the scientific revolution. "
)


def prompt_ids(llm, n: int) -> list[int]:
    body = llm.tokenize(PROMPT_TEXT.encode(), add_bos=False, special=False)
    bos = llm.token_bos()
    ids = [bos] if bos >= 0 else []
    while len(ids) < n:
        ids.extend(body)
    return ids[:n]


def positive(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="GGUF file")
    ap.add_argument("--threads", type=positive, default=1)
    ap.add_argument("--prompt-tokens", type=positive, default=128)
    ap.add_argument("--gen-tokens", type=positive, default=64)
    ap.add_argument("--rounds", type=positive, default=3)
    args = ap.parse_args()

    import llama_cpp
    import numpy as np

    p, g = args.prompt_tokens, args.gen_tokens
    n_ctx = p + g + 16
    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=n_ctx,
        n_batch=p,
        n_ubatch=p,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        logits_all=False,
        verbose=False,
    )
    if llm.n_ctx() < n_ctx:
        print(f"peer_speed: model context {llm.n_ctx()} < {n_ctx} tokens needed", file=sys.stderr)
        return 2
    ids = prompt_ids(llm, p)

    n_vocab = llm.n_vocab()

    def last_logits():
        # With logits_all=False, Llama.eval() leaves llm.scores untouched: read llama.cpp's buffer.
        return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))

    def one_round() -> tuple[float, float]:
        llm.reset()  # eval() drops KV entries from position n_tokens (0) onwards
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        nxt = int(np.argmax(last_logits()))
        t_dec = 0.0
        for _ in range(g):
            t2 = time.perf_counter()
            llm.eval([nxt])
            nxt = int(np.argmax(last_logits()))
            t_dec += time.perf_counter() - t2
        return p / (t1 - t0), g / t_dec

    one_round()  # warm-up, not measured
    results = [one_round() for _ in range(args.rounds)]
    pre = [r[0] for r in results]
    dec = [r[1] for r in results]
    out = {
        "engine": "llama.cpp",
        "threads": args.threads,
        "prefill_tps": round(statistics.median(pre), 2),
        "decode_tps": round(statistics.median(dec), 2),
        "prompt_tokens": p,
        "gen_tokens": g,
        "rounds": args.rounds,
        "llama_cpp_python": llama_cpp.__version__,
        "prefill_tps_rounds": [round(x, 2) for x in pre],
        "decode_tps_rounds": [round(x, 2) for x in dec],
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
