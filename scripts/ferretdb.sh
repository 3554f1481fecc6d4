#!/usr/bin/env bash
# FerretDB, a MongoDB wire-protocol server, for the MongoDB tests (docs/storage.md, "Testing MongoDB").
#
#   scripts/ferretdb.sh install   build FerretDB into .cache/bin/ferretdb (once; Go and its module proxy)
#   scripts/ferretdb.sh start     start it on a free loopback port; prints MONGODB_URI=mongodb://127.0.0.1:<port>/
#   scripts/ferretdb.sh stop      stop the instance `start` started and delete its data
#   scripts/ferretdb.sh status    print MONGODB_URI=… of the running instance, exit 1 if none
#
# `export "$(scripts/ferretdb.sh start)"` then `npm test` runs the MongoDB suites against it. `npm test`
# also starts the installed binary by itself when MONGODB_URI is not set, so `install` is all most
# developers need. Nothing here touches the machine's PostgreSQL or Redis: the SQLite handler keeps the
# data in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VERSION=v1.24.2
MODULE=github.com/FerretDB/FerretDB
BIN=$ROOT/.cache/bin/ferretdb
STATE=$ROOT/.cache/ferretdb

say() { echo "ferretdb: $*" >&2; }

installed() { [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qx "version: $VERSION"; }

install() {
  if installed; then say "$VERSION already installed at ${BIN#"$ROOT"/}"; return; fi
  command -v go >/dev/null || { say "Go is not installed (https://go.dev/dl/): cannot build FerretDB"; exit 1; }
  # `go install $MODULE/cmd/ferretdb@$VERSION` builds, but the binary panics at start ("Invalid
  # build/version/version.txt file content. Please run `bin/task gen-version`"): FerretDB's release
  # process writes that file from git, and the module zip does not contain it. So: the same module
  # version from the module proxy, with the one-line file its message asks for, built with `go build`.
  export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
  say "downloading $MODULE@$VERSION from the Go module proxy"
  local dir
  dir=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { say "go mod download $MODULE@$VERSION gave no source directory"; exit 1; }
  say "building (a few minutes the first time)"
  mkdir -p "$(dirname "$BIN")"
  (
    src=$(mktemp -d "${TMPDIR:-/tmp}/ferretdb-src-XXXXXX")
    trap 'rm -rf "$src"' EXIT
    cp -R "$dir/." "$src"
    chmod -R u+w "$src"
    echo "$VERSION" > "$src/build/version/version.txt"
    cd "$src" && go build -trimpath -o "$BIN.tmp" ./cmd/ferretdb
  )
  mv "$BIN.tmp" "$BIN"
  installed || { say "the built binary does not report $VERSION"; exit 1; }
  say "installed $VERSION at ${BIN#"$ROOT"/}"
}

running() { [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; }

start() {
  if running; then echo "MONGODB_URI=mongodb://127.0.0.1:$(cat "$STATE/port")/"; return; fi
  [ -x "$BIN" ] || { say "not installed: run scripts/ferretdb.sh install"; exit 1; }
  rm -rf "$STATE" && mkdir -p "$STATE"
  local port data
  port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  data=$(mktemp -d "${TMPDIR:-/tmp}/ditto-ferretdb-XXXXXX")
  # Loopback only, no telemetry, no debug HTTP listener; state and data in the temporary directory.
  nohup "$BIN" --handler=sqlite --sqlite-url="file:$data/" --state-dir="$data" \
    --listen-addr="127.0.0.1:$port" --debug-addr=- --telemetry=disable --log-level=WARN \
    > "$data/ferretdb.log" 2>&1 < /dev/null &
  echo $! > "$STATE/pid"
  echo "$port" > "$STATE/port"
  echo "$data" > "$STATE/data"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      say "started (pid $(cat "$STATE/pid"), data in $data)"
      echo "MONGODB_URI=mongodb://127.0.0.1:$port/"
      return
    fi
    running || break
    sleep 0.1
  done
  say "did not start: $(tail -n 3 "$data/ferretdb.log" 2>/dev/null | tr '\n' ' ')"
  stop
  exit 1
}

stop() {
  if running; then
    local pid
    pid=$(cat "$STATE/pid")
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    say "stopped (pid $pid)"
  fi
  if [ -f "$STATE/data" ]; then rm -rf "$(cat "$STATE/data")"; fi
  rm -rf "$STATE"
}

status() {
  running || { say "not running"; exit 1; }
  echo "MONGODB_URI=mongodb://127.0.0.1:$(cat "$STATE/port")/"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: scripts/ferretdb.sh install|start|stop|status" >&2; exit 2 ;;
esac
