# Helpers shared by the delivery scripts (deploy, rollback, setup-secrets, validate-secrets).
# Source after lib.sh; do not run it.
# shellcheck shell=bash
# shellcheck source=scripts/lib-cloud.sh
source "$ROOT/scripts/lib-cloud.sh"

# Path of the native secrets CLI, built (debug profile, fast) when missing or stale.
# SECRETS_CLI overrides it (tests).
secrets_cli_path() {
  if [[ -n "${SECRETS_CLI:-}" ]]; then echo "$SECRETS_CLI"; return 0; fi
  local bin="$ROOT/target/debug/secrets-cli"
  if [[ ! -x "$bin" ]] || [[ -n "$(find "$ROOT/tools/secrets-cli" "$ROOT/shared/secrets-catalog" \
        -newer "$bin" -name '*.rs' -print -quit)" ]]; then
    say "building secrets-cli"
    flock /tmp/assistant-edge-build.lock cargo build -q -p secrets-cli --manifest-path "$ROOT/Cargo.toml" >&2 \
      || die "could not build tools/secrets-cli"
  fi
  echo "$bin"
}

# Appends markdown to the job summary ($GITHUB_STEP_SUMMARY on GitHub, --summary FILE here).
summary() {
  [[ -n "${SUMMARY_FILE:-}" ]] || return 0
  printf '%s\n' "$@" >>"$SUMMARY_FILE"
}

# Records KEY=VALUE as a step output on GitHub (no-op elsewhere).
output() {
  [[ -n "${GITHUB_OUTPUT:-}" ]] || return 0
  printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
}

# validate_with_retries URL ARGS...: runs scripts/validate-deployment until it passes, at most
# $VALIDATE_ATTEMPTS times (default 8), $VALIDATE_INTERVAL seconds apart (default 15): new
# versions take a few seconds to reach every location, so one early failure is not a verdict.
# The last attempt's output is kept in $VALIDATE_LOG.
validate_with_retries() {
  local url="$1"; shift
  local attempts="${VALIDATE_ATTEMPTS:-8}" interval="${VALIDATE_INTERVAL:-15}" i
  # VALIDATE_DEPLOYMENT replaces the checker in the delivery tests (no live host there).
  local cmd=("${VALIDATE_DEPLOYMENT:-$ROOT/scripts/validate-deployment}" "$url" "$@")
  VALIDATE_LOG="$(mktemp)"
  if cloud_dry; then
    printf 'would run: %s   (up to %s attempts, %ss apart)\n' \
      "$(cloud_line scripts/validate-deployment "$url" "$@")" "$attempts" "$interval"
    return 0
  fi
  for ((i = 1; i <= attempts; i++)); do
    say "validate-deployment attempt $i/$attempts: $url $*"
    if "${cmd[@]}" >"$VALIDATE_LOG" 2>&1; then
      tail -n 3 "$VALIDATE_LOG" >&2
      return 0
    fi
    tail -n 5 "$VALIDATE_LOG" >&2
    ((i < attempts)) && sleep "$interval"
  done
  return 1
}
