#!/usr/bin/env bash
# Build the llama.cpp peer (llama-cpp-python, from source) into a virtual environment.
#
# Usage: bench/setup-peer.sh VENV_DIR
#
# Env (optional):
#   PYTHON                      interpreter used to create the venv (default: python3)
#   CMAKE_BUILD_PARALLEL_LEVEL  compile jobs (default: 2)
#   PEER_WHEEL_DIR              if set, the built wheel is kept in (and reused from) this folder,
#                               so a CI cache can skip the 10-20 minute compile next time.
#
# Why these CMake flags: on Sapphire Rapids a native build turns on AMX, whose Q4_1 path is wrong
# (mean |dlogprob| 0.39 vs the exact reference, upstream PR #16315) or crashes. We pin an explicit
# AVX-512 (+VBMI, VNNI, BF16) build with every AMX option off. bench/peer_check.py verifies the result.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
venv=$1
version=0.3.36

export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \
-DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
-DGGML_AMX_BF16=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install -U pip
if [ -n "${PEER_WHEEL_DIR:-}" ]; then
    mkdir -p "$PEER_WHEEL_DIR"
    # A wheel tag does not record CMAKE_ARGS: only reuse wheels built by this script.
    if ! ls "$PEER_WHEEL_DIR"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
        "$venv/bin/pip" wheel --no-deps --no-binary llama-cpp-python -w "$PEER_WHEEL_DIR" \
            "llama-cpp-python==$version"
    fi
    wheel=$(ls "$PEER_WHEEL_DIR"/llama_cpp_python-"$version"-*.whl | head -n 1)
    "$venv/bin/pip" install --no-deps "$wheel"
    "$venv/bin/pip" install "llama-cpp-python==$version" numpy  # pulls the remaining dependencies
else
    "$venv/bin/pip" install --no-binary llama-cpp-python "llama-cpp-python==$version" numpy
fi
"$venv/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)'
