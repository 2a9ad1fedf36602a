#!/usr/bin/env bash
# The contract from Python: generates stubs from client/proto with grpcio-tools, starts a server
# (embedded PostgreSQL in a temporary directory, authentication off on loopback) and runs
# clients/python/smoke.py against it: health, create, import, allocate, inventory, and a
# google.rpc error detail. Installs grpcio-tools, grpcio-status and grpcio-health-checking for
# this user when missing (--break-system-packages where the system Python is externally managed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(grpcio-tools grpcio-status grpcio-health-checking)
have_packages() {
  python3 -c 'import grpc_tools.protoc, grpc_status, grpc_health.v1.health_pb2' 2>/dev/null
}
if ! have_packages; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    SUDO=
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-pip
  fi
  python3 -m pip install --user --quiet "${PACKAGES[@]}" \
    || python3 -m pip install --user --quiet --break-system-packages "${PACKAGES[@]}"
fi
have_packages || { echo "error: ${PACKAGES[*]} are still missing" >&2; exit 1; }

WORK=$(mktemp -d)
GEN=$WORK/gen
mkdir -p "$GEN"
# google/rpc/status.proto is not generated: googleapis-common-protos (grpcio-status's
# dependency) provides google.rpc.status_pb2, which the generated imports name.
python3 -m grpc_tools.protoc -I client/proto --python_out="$GEN" --grpc_python_out="$GEN" \
  client/proto/numbering/v1/*.proto
echo "stubs: $(find "$GEN" -name '*.py' | wc -l) files"

BIN=${NUMBERING_BIN:-target/debug/numbering}
[ -x "$BIN" ] || cargo build --bin numbering
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ADDR=127.0.0.1:$(free_port)
NUMBERING_LISTEN=$ADDR NUMBERING_HEALTH_LISTEN=127.0.0.1:$(free_port) \
  NUMBERING_METRICS_LISTEN=off NUMBERING_DATA_DIR=$WORK/data \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
# Ends only the server this script started, and its PostgreSQL with it.
cleanup() { kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if ! PYTHONPATH=$GEN timeout 300 python3 clients/python/smoke.py "$ADDR"; then
  echo "--- server log ---" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi
