#!/usr/bin/env bash
# The NATS bridge end to end on loopback: a nats-server (JetStream in a temp
# dir), a store process publishing its feed, and two remote watcher
# processes; the first is stopped part way and restarted at the seq it saved.
# Each watcher ends by checking its view against the store's final state.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || { echo "nats-server not found: apt-get install nats-server" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p kvfeed-nats --bin kvfeed-nats-demo
bin="$CARGO_TARGET_DIR/release/kvfeed-nats-demo"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 14333)
nats-server -a 127.0.0.1 -p "$port" -js -sd "$dir/js" >"$dir/server.log" 2>&1 &
server=$!
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "Server is ready" "$dir/server.log" && break; sleep 0.1; done
url="nats://127.0.0.1:$port"
common=(--url "$url" --stream demo --events 20000 --keys 200)
echo "== nats-server on $url; store: 20000 scripted operations, one every 100 us"
"$bin" store "${common[@]}" --pace-us 100 &
pids+=($!); store=$!
"$bin" watch "${common[@]}" --name watcher-A --state "$dir/a.state" --stop-after 5000
echo "== watcher-A stopped; restarting it from its saved seq"
"$bin" watch "${common[@]}" --name watcher-A --state "$dir/a.state" &
pids+=($!); a=$!
"$bin" watch "${common[@]}" --name watcher-B --state "$dir/b.state" --prefix key/001 &
pids+=($!); b=$!
wait "$store"; wait "$a"; wait "$b"
echo "== demo done"
