#!/usr/bin/env python3
"""A recording stand-in for wrangler, railway and spin (installed on PATH under those names).

Every call appends {"tool", "argv", "stdin"} as one JSON line to $FAKE_LOG. Answers come from
the state directory $FAKE_STATE (files the test writes), so a test sets up the cloud it wants:
  wrangler-secrets-<env>     names, one a line          (wrangler secret list)
  wrangler-version-<env>     version id serving now     (wrangler deployments status)
  wrangler-deploy-fails      exists: wrangler deploy exits 1
  railway-vars.json          {"NAME": "value"}          (railway variables --json)
  railway-deployments.json   [{"id","status"}]          (railway deployment list --json)
  railway-up-fails           exists: railway up exits 1 (health gate refused it)
Anything else succeeds silently. No network, no credentials.
"""

import json
import os
import sys

tool = os.path.basename(sys.argv[0])
argv = sys.argv[1:]
state = os.environ["FAKE_STATE"]
reads_stdin = ("bulk" in argv or "--set-from-stdin" in argv or "--password-stdin" in argv)
stdin = sys.stdin.read() if reads_stdin else None
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"tool": tool, "argv": argv, "stdin": stdin}) + "\n")


def read(name, default=None):
    path = os.path.join(state, name)
    return open(path).read() if os.path.exists(path) else default


def arg(flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


if tool == "wrangler":
    env = arg("--env")
    if argv[:2] == ["secret", "list"]:
        names = (read(f"wrangler-secrets-{env}", "") or "").split()
        print(json.dumps([{"name": n, "type": "secret_text"} for n in names]))
    elif argv[:2] == ["deployments", "status"]:
        version = read(f"wrangler-version-{env}")
        if version is None:
            print(f"The Worker {env} has no deployments.", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"id": "dep", "versions": [{"version_id": version.strip(), "percentage": 100}]}))
    elif argv[:1] == ["deploy"]:
        if read("wrangler-deploy-fails") is not None:
            sys.exit(1)
        with open(os.path.join(state, f"wrangler-version-{env}"), "w") as f:
            f.write(f"new-{env}\n")
        print(f"Deployed {env}")
    elif argv[:1] == ["rollback"]:
        print("rolled back")
elif tool == "railway":
    if argv[:1] == ["variables"] and "--json" in argv:
        print(read("railway-vars.json", "{}"))
    elif argv[:2] == ["deployment", "list"]:
        print(read("railway-deployments.json", "[]"))
    elif argv[:1] == ["up"]:
        if read("railway-up-fails") is not None:
            print("Deploy failed")
            sys.exit(1)
        print("Deploy complete")
elif tool == "spin":
    if argv[:2] == ["registry", "push"]:
        print("Pushed with digest sha256:" + "ab" * 32)
