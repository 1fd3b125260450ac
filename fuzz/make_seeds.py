#!/usr/bin/env python3
"""Write the few tiny seed files in `seeds/` with the `gguf` Python package's GGUFWriter
(an independent writer): metadata of every value type and small tensors of several types."""

from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

HERE = Path(__file__).resolve().parent / "seeds"
HERE.mkdir(exist_ok=True)


def write(name, build):
    w = gguf.GGUFWriter(str(HERE / name), arch="llama")
    build(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def every_value(w):
    w.add_uint8("t.u8", 7)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 700)
    w.add_int16("t.i16", -700)
    w.add_uint32("t.u32", 70000)
    w.add_int32("t.i32", -70000)
    w.add_uint64("t.u64", 2**40)
    w.add_int64("t.i64", -(2**40))
    w.add_float32("t.f32", 1.5)
    w.add_float64("t.f64", -2.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo")
    w.add_array("t.strs", ["a", "bc", ""])
    w.add_array("t.ints", [1, 2, 3])
    w.add_array("t.floats", [0.5, 1.5])
    w.add_tensor("f32", np.arange(8, dtype=np.float32))


def quantized(w):
    rng = np.random.default_rng(1)
    for ty in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        data = rng.normal(size=(2, 32)).astype(np.float32)
        q = gguf.quants.quantize(data, ty)
        w.add_tensor(ty.name.lower(), q, raw_dtype=ty)
    w.add_tensor("f16", np.ones((2, 4), dtype=np.float16))
    for ty in (T.Q4_K, T.Q5_K, T.Q6_K):
        _, size = gguf.GGML_QUANT_SIZES[ty]
        w.add_tensor(ty.name.lower(), np.zeros((1, size), dtype=np.uint8), raw_dtype=ty)


write("every-value.gguf", every_value)
write("quantized.gguf", quantized)
write("empty.gguf", lambda w: None)
