#!/usr/bin/env python3
"""Golden fixtures for hearth-gguf's dequantizers, from an independent reference.

Generated once by the `gguf` Python package version 0.19.0 (gguf-py from llama.cpp, with numpy
2.4.6): the independent reference. Hearth's Rust code is not involved in making these files.

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf==0.19.0 numpy
    /tmp/gguf-venv/bin/python make_quant_fixtures.py [path/to/smollm2-135m-q4_1.gguf]

Writes, next to this script:

- `quant_fixtures.jsonl`: one JSON object per line, `{"type", "case", "blocks", "expected"}`:
  `type` is the ggml type name, `case` says how the blocks were made, `blocks` is the hex of the
  raw block bytes and `expected` the hex of the little-endian f32 values `gguf.quants.dequantize`
  gives for them. Types `gguf.quants` can quantize (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) get
  blocks quantized from random and edge-case floats; K-quants, which it can only dequantize, get
  random block bytes with finite f16 scales (normal and subnormal).
- `ggml_types.jsonl`: `{"name", "id", "block_size", "type_size"}` for every type gguf-py knows.
- `model_rows.jsonl` (only when a model path is given): `{"tensor", "type", "row", "expected"}`,
  the reference dequantization of a few rows of real tensors of SmolLM2-135M-Instruct (Q4_1 GGUF).
"""

import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

HERE = Path(__file__).resolve().parent
rng = np.random.default_rng(20261122)


def f16_bits(values):
    return np.asarray(values, dtype=np.float32).astype(np.float16).view(np.uint16)


def finite_f16_scales(n, subnormal=False):
    """Random finite f16 bit patterns: small positive normal scales, or subnormal ones."""
    if subnormal:
        return rng.integers(1, 0x400, size=n, dtype=np.uint16)
    # exponents around 2^-14 .. 2^0, both signs for variety
    exp = rng.integers(1, 16, size=n, dtype=np.uint16)
    mant = rng.integers(0, 0x400, size=n, dtype=np.uint16)
    sign = rng.integers(0, 2, size=n, dtype=np.uint16) << 15
    return sign | (exp << 10) | mant


def float_cases(block):
    """Named float inputs, each a whole number of `block`-element blocks."""
    n = block * 4
    cases = {
        "normal": rng.normal(0.0, 1.0, n).astype(np.float32),
        "uniform-wide": rng.uniform(-300.0, 300.0, n).astype(np.float32),
        "zeros": np.zeros(block, dtype=np.float32),
        "constant": np.full(block, 0.75, dtype=np.float32),
        "negative": -np.abs(rng.normal(0.0, 2.0, block)).astype(np.float32),
        "positive": np.abs(rng.normal(0.0, 2.0, block)).astype(np.float32),
        "large": rng.uniform(-60000.0, 60000.0, block).astype(np.float32),
        # scales come out subnormal in f16 (below 6.1e-5)
        "tiny": rng.normal(0.0, 1e-6, block).astype(np.float32),
        "one-spike": np.where(np.arange(block) == 5, 1000.0, 0.001).astype(np.float32),
    }
    return cases


def emit(out, ty, case, blocks, expected):
    blocks = np.ascontiguousarray(blocks).view(np.uint8).reshape(-1)
    expected = np.ascontiguousarray(expected, dtype=np.float32).reshape(-1)
    out.write(json.dumps({
        "type": ty.name,
        "case": case,
        "blocks": blocks.tobytes().hex(),
        "expected": expected.astype("<f4").tobytes().hex(),
    }) + "\n")


def quantizable(out, ty):
    block, _ = gguf.GGML_QUANT_SIZES[ty]
    for case, data in float_cases(max(block, 32)).items():
        q = quantize(data.reshape(1, -1), ty)
        emit(out, ty, f"quantized-{case}", q, dequantize(q, ty))


def raw_halves(out):
    """F16 and BF16 from bit patterns: every exponent with edge mantissas, plus random ones."""
    edge = [s | (e << 10) | m for s in (0, 0x8000) for e in range(32)
            for m in (0, 1, 2, 0x155, 0x200, 0x3fe, 0x3ff)]
    bits = np.array(edge + list(rng.integers(0, 0x10000, 512)), dtype=np.uint16)
    emit(out, T.F16, "bit-patterns", bits, dequantize(bits.view(np.uint8), T.F16))
    bedge = [s | (e << 7) | m for s in (0, 0x8000) for e in (0, 1, 2, 126, 127, 128, 254, 255)
             for m in (0, 1, 0x40, 0x7f)]
    bbits = np.array(bedge + list(rng.integers(0, 0x10000, 256)), dtype=np.uint16)
    emit(out, T.BF16, "bit-patterns", bbits, dequantize(bbits.view(np.uint8).reshape(1, -1), T.BF16))
    fbits = np.concatenate([
        np.array([0, 0x80000000, 1, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001],
                 dtype=np.uint32),
        rng.integers(0, 2**32, 120, dtype=np.uint64).astype(np.uint32),
    ])
    emit(out, T.F32, "bit-patterns", fbits, dequantize(fbits.view(np.uint8), T.F32))


def k_quant(out, ty, n_blocks=6):
    """Random K-quant blocks: random bytes with the f16 scale fields replaced by finite values."""
    _, size = gguf.GGML_QUANT_SIZES[ty]
    for case, subnormal in (("random-bytes", False), ("random-bytes-subnormal-scales", True)):
        blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
        if ty == T.Q6_K:
            blocks[:, 208:210] = finite_f16_scales(n_blocks, subnormal).view(np.uint8).reshape(-1, 2)
        else:  # Q4_K, Q5_K: d and dmin first
            blocks[:, 0:4] = finite_f16_scales(2 * n_blocks, subnormal).view(np.uint8).reshape(-1, 4)
        emit(out, ty, case, blocks, dequantize(blocks, ty))


def model_rows(path):
    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    picks = [
        ("token_embd.weight", [0, 1234, 49151]),  # Q8_0
        ("blk.0.attn_q.weight", [0, 575]),  # Q4_1, rows of 576
        ("blk.29.ffn_down.weight", [100]),  # Q4_1, rows of 1536
        ("blk.7.attn_norm.weight", [0]),  # F32
    ]
    with open(HERE / "model_rows.jsonl", "w") as out:
        for name, rows in picks:
            t = by_name[name]
            data = t.data.reshape(-1, t.data.shape[-1]) if t.data.ndim > 1 else t.data.reshape(1, -1)
            for r in rows:
                if t.tensor_type == T.F32:
                    values = np.asarray(data[r], dtype=np.float32)
                else:
                    values = dequantize(np.ascontiguousarray(data[r]), t.tensor_type)
                out.write(json.dumps({
                    "tensor": name,
                    "type": t.tensor_type.name,
                    "row": r,
                    "expected": values.astype("<f4").tobytes().hex(),
                }) + "\n")


def type_sizes():
    with open(HERE / "ggml_types.jsonl", "w") as out:
        for ty in T:
            if ty in gguf.GGML_QUANT_SIZES:
                block, size = gguf.GGML_QUANT_SIZES[ty]
                out.write(json.dumps({"name": ty.name, "id": ty.value, "block_size": block,
                                      "type_size": size}) + "\n")


def main():
    with open(HERE / "quant_fixtures.jsonl", "w") as out:
        raw_halves(out)
        for ty in (T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
            quantizable(out, ty)
        for ty in (T.Q4_K, T.Q5_K, T.Q6_K):
            k_quant(out, ty)
    type_sizes()
    if len(sys.argv) > 1:
        model_rows(sys.argv[1])


if __name__ == "__main__":
    main()
