#!/usr/bin/env bash
# Tests the Go binding: go vet, go test -race (the package and the server), then builds
# cmd/rill-server, starts it on a free loopback port and runs OpenAI's Python client
# against it (tests/test_openai_client.py on the default model; tests/test_openai_tools.py,
# reasoning and tool calls, on the designed Qwen3 model).
#
# Environment (defaults from this script's location):
#   RILL_LIB_DIR  directory with librill.so   (../../target/release)
#   RILL_INCLUDE  directory with rill.h       (../../include)
#   RILL_MODEL    the GGUF model              (../../models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   RILL_DESIGNED_MODEL  the designed Qwen3 model (../../scripts/designed_model.sh makes it)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RILL_LIB_DIR="${RILL_LIB_DIR:-$ROOT/target/release}"
RILL_INCLUDE="${RILL_INCLUDE:-$ROOT/include}"
RILL_MODEL="${RILL_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}"

for f in "$RILL_LIB_DIR/librill.so" "$RILL_INCLUDE/rill.h" "$RILL_MODEL"; do
  if [ ! -e "$f" ]; then
    echo "test.sh: missing $f (build rill and fetch the model first; see the top-level README)" >&2
    exit 1
  fi
done
# Absolute paths: the rpath and the tests run from other directories.
RILL_LIB_DIR="$(cd "$RILL_LIB_DIR" && pwd)"
RILL_INCLUDE="$(cd "$RILL_INCLUDE" && pwd)"
RILL_MODEL="$(cd "$(dirname "$RILL_MODEL")" && pwd)/$(basename "$RILL_MODEL")"
export RILL_LIB_DIR RILL_INCLUDE RILL_MODEL

# ---- What a fresh machine may lack, from the registries only, pinned ----------------
GO_DEBIAN_VERSION="2:1.19~1" # Debian bookworm's golang-go; go.mod asks for go 1.19
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: $* missing and not root to apt-get install it" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  else
    apt_install "golang-go=$GO_DEBIAN_VERSION"
  fi
fi
if ! command -v gcc >/dev/null 2>&1; then
  apt_install gcc libc6-dev
fi
if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3 python3-pip
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  -r "$ROOT/tests/requirements.txt" # pins openai, pydantic and pytest

# ---- Go ---------------------------------------------------------------------------
export CGO_ENABLED=1
export CGO_CFLAGS="-I$RILL_INCLUDE"
export CGO_LDFLAGS="-L$RILL_LIB_DIR -Wl,-rpath,$RILL_LIB_DIR"
cd "$HERE"
echo "== $(go version)"
echo "== go vet ./..."
go vet ./...
echo "== go test -race -count=1 ./..."
go test -race -count=1 ./...

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== go build ./cmd/rill-server"
go build -buildvcs=false -o "$WORK/rill-server" ./cmd/rill-server

# ---- The server and OpenAI's client --------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
# Ready when GET /stats answers 200; fails when the server exits first.
wait_ready() {
  python3 - "$1" "$SERVER_PID" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)  # the server exited
    try:
        with urllib.request.urlopen(url + "/stats", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

# Starts rill-server on MODEL, runs the pytest FILE against it with RILL_SERVER_URL set,
# then stops the server with SIGTERM (it must exit cleanly within its shutdown time).
run_server_suite() {
  local model="$1" file="$2"
  local started=0 PORT URL
  for attempt in 1 2 3; do # another process may take the free port before the server does
    PORT="$(free_port)"
    URL="http://127.0.0.1:$PORT"
    "$WORK/rill-server" --model "$model" --addr "127.0.0.1:$PORT" --threads 2 >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    if wait_ready "$URL"; then
      started=1
      break
    fi
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    echo "test.sh: rill-server did not start (attempt $attempt):" >&2
    cat "$WORK/server.log" >&2
  done
  if [ "$started" != 1 ]; then
    exit 1
  fi
  echo "== rill-server ready on $URL ($(basename "$model"))"

  echo "== pytest tests/$(basename "$file")"
  local rc=0
  RILL_SERVER_URL="$URL" python3 -m pytest -q -p no:cacheprovider "$file" || rc=$?

  kill -TERM "$SERVER_PID"
  local stopped=0
  for _ in $(seq 1 150); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      stopped=1
      break
    fi
    sleep 0.1
  done
  if [ "$stopped" != 1 ]; then
    echo "test.sh: rill-server did not exit within 15 s of SIGTERM" >&2
    rc=1
  else
    local server_rc=0
    wait "$SERVER_PID" || server_rc=$?
    SERVER_PID=""
    if [ "$server_rc" != 0 ]; then
      echo "test.sh: rill-server exited with status $server_rc" >&2
      rc=1
    fi
  fi
  if [ "$rc" != 0 ]; then
    echo "== rill-server log" >&2
    cat "$WORK/server.log" >&2
    exit "$rc"
  fi
}

run_server_suite "$RILL_MODEL" "$HERE/tests/test_openai_client.py"
# Reasoning and tool calls through the server, on the designed Qwen3 model
# (scripts/designed_model.sh; RILL_DESIGNED_MODEL is set by scripts/test.sh).
designed="${RILL_DESIGNED_MODEL:-$("$HERE/../../scripts/designed_model.sh")}"
RILL_DESIGNED_MODEL="$designed" run_server_suite "$designed" "$HERE/tests/test_openai_tools.py"
echo "== bindings/go: all tests passed"
