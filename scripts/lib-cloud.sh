#!/usr/bin/env bash
# The one layer through which delivery scripts call the cloud CLIs (wrangler, railway, spin).
# Source it after lib.sh; do not run it.
#
# * DRY_RUN=1: each command is printed as `would run: <command>` on stdout and nothing runs;
#   a command that would read a secret from stdin is printed with `<<< stdin: <names>` and
#   its stdin is drained unread. That output is the exact plan.
# * Otherwise each command is printed as `+ <command>` on stderr, then run.
# * Secrets never travel in argv: the helpers below take them on stdin only.
# * Tools are found on PATH first (tests put recording fakes there), then wrangler in the
#   repository's pinned node_modules.
# shellcheck shell=bash

cloud_dry() { [[ "${DRY_RUN:-0}" == 1 ]]; }

# The executable for TOOL.
cloud_bin() {
  local tool="$1"
  if command -v "$tool" >/dev/null 2>&1; then
    command -v "$tool"
  elif [[ "$tool" == wrangler && -x "$ROOT/node_modules/.bin/wrangler" ]]; then
    echo "$ROOT/node_modules/.bin/wrangler"
  else
    local hint=""
    [[ "$tool" == wrangler ]] && hint="; scripts/bootstrap installs the pinned one"
    die "$tool is not installed (not on PATH$hint)"
  fi
}

# The command as one shell-quoted line.
cloud_line() {
  local out="" a
  for a in "$@"; do out+="${out:+ }$(printf '%q' "$a")"; done
  printf '%s' "$out"
}

# cloud TOOL ARGS...: runs a command (stdin passes through; not for secrets).
cloud() {
  local tool="$1"; shift
  if cloud_dry; then
    printf 'would run: %s\n' "$(cloud_line "$tool" "$@")"
    return 0
  fi
  printf '+ %s\n' "$(cloud_line "$tool" "$@")" >&2
  "$(cloud_bin "$tool")" "$@"
}

# cloud_query TOOL ARGS...: a read-only command whose stdout the caller parses. In a dry run
# it prints the command and outputs nothing, so callers must treat empty output as unknown.
cloud_query() {
  local tool="$1"; shift
  if cloud_dry; then
    printf 'would run: %s\n' "$(cloud_line "$tool" "$@")" >&2
    return 0
  fi
  printf '+ %s\n' "$(cloud_line "$tool" "$@")" >&2
  "$(cloud_bin "$tool")" "$@"
}

# cloud_secret_stdin "NAMES" TOOL ARGS... <secret: runs a command that reads secret material
# from stdin. Only NAMES (a description without values) is ever printed.
cloud_secret_stdin() {
  local names="$1" tool="$2"; shift 2
  if cloud_dry; then
    cat >/dev/null
    printf 'would run: %s <<< stdin: %s\n' "$(cloud_line "$tool" "$@")" "$names"
    return 0
  fi
  printf '+ %s <<< stdin: %s\n' "$(cloud_line "$tool" "$@")" "$names" >&2
  "$(cloud_bin "$tool")" "$@"
}

# Executed rather than sourced (`scripts/lib-cloud.sh cloud_secret_stdin NAMES wrangler ...`):
# the same layer for scripts written in other languages (scripts/setup-secrets).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
  die() { printf 'error: %s\n' "$*" >&2; exit 1; }
  case "${1:-}" in
    cloud|cloud_query|cloud_secret_stdin) "$@" ;;
    *) die "usage: scripts/lib-cloud.sh cloud|cloud_query|cloud_secret_stdin ARGS..." ;;
  esac
fi
