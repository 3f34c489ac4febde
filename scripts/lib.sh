# Shared helpers for the scripts in this folder. Source it; do not run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

# Every edge function: crate directory under functions/ = Spin component id = Workers env name.
FUNCTIONS=(health login logout webhook health-readiness health-comprehensive health-secrets)
# Workers that are not functions: the Durable Object host (deployed) and the dev router (local).
STORE_WORKER=store
# Test-only key-value probe (tests/kv-probe), served by `scripts/dev --with-probe`.
PROBE=kv-probe

say()  { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33mwarning: %s\033[0m\n' "$*" >&2; }
die()  { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }

# Tool locations used instead of worker-build's GitHub downloads (see scripts/bootstrap).
tool_env() {
  export PATH="$HOME/.cargo/bin:$PATH"
  export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
  export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
  export WASM_OPT_BIN="$ROOT/node_modules/binaryen/bin/wasm-opt"
  export CLOUDFLARE_CF_FETCH_ENABLED=false
  export WRANGLER_SEND_METRICS=false
}

# `spin up` flags every Spin host needs. The components are WASIp3 services, which Spin 4.0
# reuses across requests; it drops an instance `--idle-instance-timeout` (default 1 s) after its
# last response, and with it any work a request deferred past its response (the webhook's AI
# answer and send: up to edge_core::webhook::WORK_BUDGET_MS = 25 s). Measured on Spin 4.0.2: at
# the default, work still running 1.5 s after the response never finished.
SPIN_UP_FLAGS=(--idle-instance-timeout 30s)

# Puts a Spin CLI on PATH if none is there: on this workplace's machines, where no registry ships
# Spin, the bundled installer next to the repository (../shared/tools/install-spin: upstream
# Spin 4.0.2, checksum-verified, idempotent). Elsewhere install Spin from its releases
# (https://spinframework.dev). Never required: returns 1 when no Spin can be found.
ensure_spin_on_path() {
  command -v spin >/dev/null && return 0
  local installer="$ROOT/../shared/tools/install-spin" dir
  if [[ -x "$installer" ]] && dir="$("$installer")" && [[ -x "$dir/spin" ]]; then
    export PATH="$dir:$PATH"
    say "using the bundled Spin: $("$dir/spin" --version 2>/dev/null)"
    return 0
  fi
  return 1
}

# The wasm-bindgen version Cargo.lock pins; wasm-bindgen-cli must match it exactly.
locked_wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# Crate package name of a function directory (functions/health -> fn-health).
crate_of() { echo "fn-$1"; }

# A TCP port on 127.0.0.1 that nothing listens on right now. Picked at random below the
# kernel's ephemeral range (32768+ on Linux), where the outbound connections of everything
# else running cannot take it between this check and our server's bind (seen: workerd
# failing with "Address already in use" when ports came from bind(0)). Ports handed out
# recently are never handed out again: servers bind theirs only seconds later, so two picks
# in one start-up could collide (seen: two wrangler workers given the same port). The ledger
# is one file per user, locked, shared by concurrent runs; it keeps the last 2000 ports.
free_port() {
  python3 -c '
import fcntl, os, random, socket
ledger = os.environ.get("FREE_PORT_LEDGER") or "/tmp/assistant-edge-ports-%d" % os.getuid()
with open(ledger, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    recent = f.read().split()[-2000:]
    taken = set(recent)
    for _ in range(500):
        p = random.randrange(10000, 32000)
        if str(p) in taken:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        if len(recent) >= 2000:
            f.seek(0)
            f.truncate()
            f.write("".join(x + "\n" for x in recent[-1000:]))
        f.write("%d\n" % p)
        print(p)
        break
    else:
        raise SystemExit("no free port in 10000-32000")
'
}

# Runs the command `$2...` every quarter second until it succeeds; fails after $1 seconds.
poll_for() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.25
  done
}

# Waits until URL answers any HTTP status, or fails after $2 seconds (default 60).
wait_http() { poll_for "${2:-60}" curl -s -o /dev/null --max-time 2 "$1"; }

# Waits until a `wrangler dev` started in the background (pid $2, writing log $3) serves port
# $1. Returns 1 as soon as it has exited or logged that its runtime failed to start (wrangler
# dev sometimes does at start-up, after a spurious file-change restart of its custom build),
# and 2 after $4 seconds (default 180) without an answer.
wrangler_started() {
  local port="$1" pid="$2" log="$3" end=$((SECONDS + ${4:-180}))
  while ((SECONDS < end)); do
    grep -q "runtime failed to start" "$log" 2>/dev/null && return 1
    kill -0 "$pid" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" && return 0
    sleep 0.25
  done
  return 2
}

# Stops a process and all its descendants (wrangler runs node, which runs workerd).
stop_tree() {
  local pid="$1" child
  for child in $(pgrep -P "$pid" 2>/dev/null); do stop_tree "$child"; done
  kill -TERM "$pid" 2>/dev/null || true
}

# Waits for the `wrangler dev` with pid $1 on port $2, writing log $3, for $4 seconds
# (wrangler_started). If it failed to start or did not answer, stops it, keeps its log as
# $3.failed and runs the rest of the arguments, a command that starts it again and sets
# WORKER_PID, then waits $5 seconds for that one. WORKER_PID is the serving process after;
# returns non-zero when the second start failed too.
wrangler_started_or_again() {
  local pid="$1" port="$2" log="$3" first="$4" second="$5" name="${3##*/}"
  shift 5
  WORKER_PID="$pid"
  wrangler_started "$port" "$pid" "$log" "$first" && return 0
  warn "wrangler dev did not start ${name%.log} on port $port; starting it once more (first log: ${log#"$ROOT"/}.failed)"
  stop_tree "$pid"
  # The next one binds the same port: give this one up to 5 s to let go of it.
  released() { ! kill -0 "$pid" 2>/dev/null && ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; }
  poll_for 5 released || true
  mv "$log" "$log.failed"
  "$@"
  wrangler_started "$port" "$WORKER_PID" "$log" "$second"
}

# Writes wrangler.toml without its build hooks to $1, main paths made absolute, for runs that
# serve what scripts/build built: each hook's file watcher would otherwise run the hook again
# once watching starts, and wrangler then reloads the Worker in the middle of its start-up.
wrangler_config_without_builds() {
  awk -v root="$ROOT" '
    /^\[env\.[a-z-]+\.build\]$/ { skip = 1; next }
    /^\[/ { skip = 0 }
    skip { next }
    /^main = "/ { sub(/^main = "/, "main = \"" root "/") }
    { print }
  ' "$ROOT/wrangler.toml" >"$1"
}

# Starts PostgreSQL if it does not answer (the machine's cluster; CI may have it stopped).
ensure_postgres() {
  pg_isready -q -h 127.0.0.1 -p 5432 && return 0
  say "starting PostgreSQL"
  command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not running and pg_ctlcluster is missing"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  for _ in $(seq 1 40); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.25; done
  die "PostgreSQL did not come up on 127.0.0.1:5432"
}

# Starts Redis if it does not answer (Spin's production key-value backend; see spin/).
ensure_redis() {
  command -v redis-cli >/dev/null || return 0
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

# Application variables declared in a Spin manifest's [variables] table (lower snake case);
# default: the main spin.toml.
declared_variables() {
  awk '/^\[variables\]/ { on = 1; next } /^\[/ { on = 0 } on && /^[a-z0-9_]+ *=/ { sub(/ *=.*/, ""); print }' \
    "${1:-$ROOT/spin.toml}"
}

# Reads KEY=VALUE lines from a dotenv file into the environment without overriding variables
# that are already set (the real environment wins). No shell evaluation of the file.
load_dotenv() {
  local file="$1" line key value
  [[ -f "$file" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    line="${line#export }"
    key="${line%%=*}"; value="${line#*=}"
    [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { warn "$file: ignoring malformed line"; continue; }
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
    [[ -n "${!key+x}" ]] || export "$key=$value"
  done <"$file"
}
