"""scripts/deploy, scripts/rollback and scripts/setup-secrets against recording fakes of
wrangler, railway and spin (tests/delivery/fake_cli.py) on PATH, in a scratch copy of the
repository's scripts with functions of its own (so the tests do not depend on which functions
exist today). They assert the exact commands, the order, the rollback decisions and that no
secret value ever reaches argv or the scripts' output."""

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKE = os.path.join(REPO, "tests", "delivery", "fake_cli.py")
SCRIPTS = ["deploy", "rollback", "setup-secrets", "lib.sh", "lib-cloud.sh", "lib-delivery.sh", "changed-functions"]
FUNCTIONS = ["health", "login", "logout", "webhook"]
WRANGLER = "".join(f'[env.{w}]\nname = "assistant-edge-{w}"\n\n' for w in ["store", "router"] + FUNCTIONS)
OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
EVOLUTION = "B6D2F1E0-9A7C-4C3B-8E5F-1A2B3C4D5E6F"


def secrets_cli():
    subprocess.run(["flock", "/tmp/assistant-edge-build.lock", "cargo", "build", "-q", "-p", "secrets-cli"],
                   cwd=REPO, check=True)
    return os.path.join(REPO, "target", "debug", "secrets-cli")


class Scratch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cli = secrets_cli()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="delivery-")
        self.root = os.path.join(self.dir, "repo")
        os.makedirs(os.path.join(self.root, "scripts"))
        for s in SCRIPTS:
            shutil.copy(os.path.join(REPO, "scripts", s), os.path.join(self.root, "scripts", s))
        for f in FUNCTIONS:
            os.makedirs(os.path.join(self.root, "functions", f))
            open(os.path.join(self.root, "functions", f, "Cargo.toml"), "w").write(f'[package]\nname = "fn-{f}"\n')
        open(os.path.join(self.root, "wrangler.toml"), "w").write(WRANGLER)
        subprocess.run(["git", "init", "-q"], cwd=self.root, check=True)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                       cwd=self.root, check=True)
        self.sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.root, capture_output=True, text=True).stdout.strip()
        self.bin = os.path.join(self.dir, "bin")
        os.makedirs(self.bin)
        for tool in ("wrangler", "railway", "spin"):
            os.symlink(FAKE, os.path.join(self.bin, tool))
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)
        self.log = os.path.join(self.dir, "calls.jsonl")
        validator = os.path.join(self.bin, "fake-validate-deployment")
        with open(validator, "w") as f:
            f.write('#!/bin/sh\necho "validate $*"\n'
                    f'if [ -e "{self.state}/validate-fails" ]; then echo "FAIL  GET /health answers 200"; exit 1; fi\n'
                    'echo "12 passed, 0 failed"\n')
        os.chmod(validator, 0o755)
        self.summary = os.path.join(self.dir, "summary.md")
        self.env = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}", FAKE_STATE=self.state, FAKE_LOG=self.log,
                        SECRETS_CLI=self.cli, VALIDATE_DEPLOYMENT=validator, VALIDATE_ATTEMPTS="2",
                        VALIDATE_INTERVAL="0", EDGE_BASE_URL="https://api.example.test",
                        PROXY_BASE_URL="https://proxy.example.test", SPIN_OCI_REF="ghcr.io/acme/assistant-edge")
        for k in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "DRY_RUN", "GHCR_TOKEN", "GHCR_USER"):
            self.env.pop(k, None)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def state_file(self, name, text=""):
        with open(os.path.join(self.state, name), "w") as f:
            f.write(text)

    def run_script(self, name, *args, stdin=None, expect=0, env=None):
        r = subprocess.run([os.path.join(self.root, "scripts", name), *args], cwd=self.root, input=stdin,
                           capture_output=True, text=True, env={**self.env, **(env or {})})
        self.assertEqual(r.returncode, expect, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def calls(self, tool=None):
        if not os.path.exists(self.log):
            return []
        calls = [json.loads(line) for line in open(self.log)]
        return [c for c in calls if tool is None or c["tool"] == tool]

    def argvs(self, tool=None):
        return [c["argv"] for c in self.calls(tool)]

    def summary_text(self):
        return open(self.summary).read() if os.path.exists(self.summary) else ""


class Deploy(Scratch):
    def test_a_dry_run_prints_the_whole_sequence_in_order_and_runs_nothing(self):
        plan = os.path.join(self.dir, "plan.json")
        json.dump({"functions": ["login", "health"], "store": True, "spin": True, "proxy": True}, open(plan, "w"))
        r = self.run_script("deploy", "all", "--plan", plan, "--dry-run")
        lines = [l for l in r.stdout.splitlines() if l.startswith("would run: ")]
        self.assertEqual(lines, [
            "would run: wrangler deploy --env store --var ENVIRONMENT:production",
            "would run: scripts/validate-deployment https://api.example.test --production   (up to 2 attempts, 0s apart)",
            "would run: wrangler deploy --env login --var ENVIRONMENT:production",
            "would run: scripts/validate-deployment https://api.example.test --production --function login   (up to 2 attempts, 0s apart)",
            "would run: wrangler deploy --env health --var ENVIRONMENT:production",
            "would run: scripts/validate-deployment https://api.example.test --production --function health   (up to 2 attempts, 0s apart)",
            "would run: spin build",
            f"would run: spin registry push ghcr.io/acme/assistant-edge:{self.sha}",
            f"would run: railway up --service pg-proxy --environment production --ci --message deploy\\ {self.sha}",
            "would run: scripts/validate-deployment https://proxy.example.test --profile proxy --production   (up to 2 attempts, 0s apart)",
        ])
        self.assertEqual(self.calls(), [])

    def test_a_worker_is_deployed_validated_and_its_versions_recorded(self):
        self.state_file("wrangler-version-login", "old-login")
        self.run_script("deploy", "worker", "login", "--summary", self.summary)
        self.assertEqual(self.argvs("wrangler"), [
            ["deployments", "status", "--env", "login", "--json"],
            ["deploy", "--env", "login", "--var", "ENVIRONMENT:production"],
            ["deployments", "status", "--env", "login", "--json"],
        ])
        self.assertIn("| Worker `login` | deployed, validated | old-login | new-login | - |", self.summary_text())

    def test_a_worker_failing_validation_is_rolled_back_to_the_version_that_served_before(self):
        self.state_file("wrangler-version-login", "old-login")
        self.state_file("validate-fails")
        r = self.run_script("deploy", "worker", "login", "--summary", self.summary, expect=1)
        self.assertEqual(self.argvs("wrangler")[-1],
                         ["rollback", "old-login", "--env", "login", "--message", f"validation failed for {self.sha}", "--yes"])
        self.assertIn("rolled back to old-login", self.summary_text())
        self.assertIn("FAIL  GET /health answers 200", self.summary_text())
        self.assertIn("deploy failed: login", r.stderr)

    def test_a_first_deploy_failing_validation_has_nothing_to_roll_back_to_and_says_so(self):
        self.state_file("validate-fails")
        self.run_script("deploy", "worker", "login", "--summary", self.summary, expect=1)
        self.assertFalse(any(a[0] == "rollback" for a in self.argvs("wrangler")))
        self.assertIn("no previous version (first deploy)", self.summary_text())

    def test_a_failed_wrangler_deploy_needs_no_rollback(self):
        self.state_file("wrangler-version-login", "old-login")
        self.state_file("wrangler-deploy-fails")
        self.run_script("deploy", "worker", "login", "--summary", self.summary, expect=1)
        self.assertFalse(any(a[0] == "rollback" for a in self.argvs("wrangler")))

    def test_settings_become_vars_and_a_secret_in_the_settings_file_is_refused(self):
        settings = os.path.join(self.dir, "settings.env")
        open(settings, "w").write("FRONTEND_URL=https://app.example.test\nTRUSTED_HOSTS=api.example.test\n")
        self.run_script("deploy", "worker", "health", "--settings-file", settings)
        self.assertIn(["deploy", "--env", "health", "--var", "ENVIRONMENT:production", "--var",
                       "FRONTEND_URL:https://app.example.test", "--var", "TRUSTED_HOSTS:api.example.test"],
                      self.argvs("wrangler"))
        open(settings, "a").write("JWT_SECRET_KEY=" + "x" * 40 + "\n")
        os.remove(self.log)
        r = self.run_script("deploy", "worker", "health", "--settings-file", settings, expect=1)
        self.assertIn("JWT_SECRET_KEY is a secret", r.stderr)
        self.assertNotIn("x" * 40, r.stderr + r.stdout)
        self.assertFalse(any(a[0] == "deploy" for a in self.argvs("wrangler")))

    def test_the_store_goes_first_and_its_failure_stops_the_functions(self):
        plan = os.path.join(self.dir, "plan.json")
        json.dump({"functions": ["health"], "store": True, "spin": False, "proxy": False}, open(plan, "w"))
        self.state_file("wrangler-version-store", "old-store")
        self.state_file("validate-fails")
        self.run_script("deploy", "all", "--plan", plan, expect=1)
        deploys = [a for a in self.argvs("wrangler") if a[0] in ("deploy", "rollback")]
        self.assertEqual([a[:3] for a in deploys], [["deploy", "--env", "store"], ["rollback", "old-store", "--env"]])

    def test_railway_refusing_the_proxy_is_reported_without_a_rollback(self):
        self.state_file("railway-deployments.json", json.dumps([{"id": "d1", "status": "SUCCESS"}]))
        self.state_file("railway-up-fails")
        self.run_script("deploy", "proxy", "--summary", self.summary, expect=1)
        self.assertFalse(any(a[0] == "api" for a in self.argvs("railway")))
        self.assertIn("Railway refused it", self.summary_text())

    def test_a_proxy_failing_validation_is_rolled_back_to_the_deployment_serving_before(self):
        self.state_file("railway-deployments.json", json.dumps(
            [{"id": "d2", "status": "FAILED"}, {"id": "d1", "status": "SUCCESS"}, {"id": "d0", "status": "SUCCESS"}]))
        self.state_file("validate-fails")
        self.run_script("deploy", "proxy", "--summary", self.summary, expect=1)
        up = [a for a in self.argvs("railway") if a[0] == "up"][0]
        self.assertEqual(up, ["up", "--service", "pg-proxy", "--environment", "production", "--ci", "--message", f"deploy {self.sha}"])
        self.assertEqual(self.argvs("railway")[-1],
                         ["api", "mutation ($id: String!) { deploymentRollback(id: $id) }", "--raw-var", "id=d1"])

    def test_the_spin_push_records_the_digest_and_the_registry_token_goes_through_stdin(self):
        out = os.path.join(self.dir, "out")
        token = "ghp_" + "T0k3n" * 8
        self.run_script("deploy", "spin", "--summary", self.summary,
                        env={"GHCR_USER": "acme", "GHCR_TOKEN": token, "GITHUB_OUTPUT": out})
        self.assertEqual(self.argvs("spin"), [
            ["registry", "login", "ghcr.io", "--username", "acme", "--password-stdin"], ["build"],
            ["registry", "push", f"ghcr.io/acme/assistant-edge:{self.sha}"]])
        self.assertEqual(self.calls("spin")[0]["stdin"], token)
        self.assertIn("spin_digest=sha256:" + "ab" * 32, open(out).read())
        self.assertIn("sha256:" + "ab" * 32, self.summary_text())
        # Hosts are told the whole command, with the flag that keeps deferred work alive.
        self.assertIn(f"spin up --from ghcr.io/acme/assistant-edge@sha256:{'ab' * 32} "
                      "--idle-instance-timeout 30s", self.summary_text())


class Rollback(Scratch):
    def test_a_worker_rolls_back_to_the_named_version(self):
        self.run_script("rollback", "login", "--to", "v-7", "--reason", "bad release")
        self.assertEqual(self.argvs("wrangler"), [["rollback", "v-7", "--env", "login", "--message", "bad release", "--yes"]])

    def test_spin_names_the_digest_and_the_spin_up_flags_hosts_need(self):
        r = self.run_script("rollback", "spin", "--to", "sha256:" + "cd" * 32)
        self.assertIn(f"@sha256:{'cd' * 32}\" --idle-instance-timeout 30s --runtime-config-file", r.stdout)
        self.assertEqual(self.calls(), [])

    def test_without_a_version_wrangler_chooses_the_previous_stable_one(self):
        self.run_script("rollback", "health")
        self.assertEqual(self.argvs("wrangler"), [["rollback", "--env", "health", "--message", "manual rollback", "--yes"]])

    def test_the_proxy_goes_back_to_the_newest_success_before_the_serving_one(self):
        self.state_file("railway-deployments.json", json.dumps(
            [{"id": "d3", "status": "SUCCESS"}, {"id": "d2", "status": "FAILED"}, {"id": "d1", "status": "SUCCESS"}]))
        self.run_script("rollback", "proxy")
        self.assertEqual(self.argvs("railway")[-1][-1], "id=d1")

    def test_unknown_units_and_the_dev_router_are_refused(self):
        self.run_script("rollback", "nope", expect=1)
        self.run_script("rollback", "router", expect=1)
        self.assertEqual(self.calls(), [])


class SetupSecrets(Scratch):
    def values_file(self, text):
        path = os.path.join(self.dir, "values.env")
        open(path, "w").write(text)
        return path

    def all_argv_text(self):
        return "\n".join(" ".join(c["argv"]) for c in self.calls())

    def bulk(self, env):
        return [json.loads(c["stdin"]) for c in self.calls("wrangler") if c["argv"][:2] == ["secret", "bulk"] and c["argv"][3] == env]

    def test_a_first_setup_generates_shared_values_writes_them_by_stdin_and_prints_none(self):
        values = self.values_file(f"OPENAI_API_KEY={OPENAI}\nEVOLUTION_API_KEY={EVOLUTION}\n")
        r = self.run_script("setup-secrets", "--target", "cloudflare,railway", "--values-file", values)
        login, logout, webhook = self.bulk("login")[0], self.bulk("logout")[0], self.bulk("webhook")[0]
        self.assertEqual(self.bulk("health"), [])
        self.assertEqual(login["JWT_SECRET_KEY"], logout["JWT_SECRET_KEY"])
        self.assertRegex(login["JWT_SECRET_KEY"], r"^[A-Za-z0-9_-]{43}$")
        self.assertRegex(login["JWT_SECRET_KEY_ROTATED_AT"], r"^\d{4}-\d{2}-\d{2}$")
        self.assertEqual(webhook["OPENAI_API_KEY"], OPENAI)
        railway = {c["argv"][c["argv"].index("--set-from-stdin") + 1]: c["stdin"] for c in self.calls("railway")
                   if "--set-from-stdin" in c["argv"]}
        self.assertRegex(railway["PROXY_HMAC_KEY"], r"^[0-9a-f]{64}$")
        self.assertEqual(railway["PROXY_HMAC_KEY"], login["PROXY_HMAC_KEY"])
        self.assertTrue(all("--skip-deploys" in c["argv"] for c in self.calls("railway") if "--set-from-stdin" in c["argv"]))
        # Railway (the verifier) is written before the edge (the signer).
        tools = [c["tool"] for c in self.calls() if c["stdin"] is not None]
        self.assertEqual(tools, sorted(tools, key=lambda t: t != "railway"))
        secrets = [v for d in (login, logout, webhook) for k, v in d.items() if not k.endswith("_ROTATED_AT")]
        for v in secrets + [railway["PROXY_HMAC_KEY"]]:
            self.assertNotIn(v, self.all_argv_text())
            self.assertNotIn(v, r.stdout + r.stderr)

    def test_existing_secrets_are_left_alone_and_a_partial_one_is_an_error(self):
        for f in ("login", "logout"):
            self.state_file(f"wrangler-secrets-{f}", "JWT_SECRET_KEY\nSECRET_KEY\nPROXY_HMAC_KEY\n")
        self.state_file("wrangler-secrets-webhook", "OPENAI_API_KEY\nEVOLUTION_API_KEY\nEVOLUTION_WEBHOOK_SECRET\nPROXY_HMAC_KEY\n")
        r = self.run_script("setup-secrets", "--target", "cloudflare")
        self.assertEqual([c for c in self.calls() if c["stdin"] is not None], [])
        self.assertIn("login", r.stdout)
        self.assertRegex(r.stdout, r"JWT_SECRET_KEY\s+keep")
        self.state_file("wrangler-secrets-logout", "SECRET_KEY\nPROXY_HMAC_KEY\n")
        r = self.run_script("setup-secrets", "--target", "cloudflare", expect=1)
        self.assertIn("JWT_SECRET_KEY exists on Worker login but not on Worker logout", r.stderr)

    def test_rotate_replaces_a_value_everywhere_with_its_date(self):
        for f in ("login", "logout"):
            self.state_file(f"wrangler-secrets-{f}", "JWT_SECRET_KEY\nSECRET_KEY\nPROXY_HMAC_KEY\n")
        self.state_file("wrangler-secrets-webhook", "OPENAI_API_KEY\nEVOLUTION_API_KEY\nEVOLUTION_WEBHOOK_SECRET\nPROXY_HMAC_KEY\n")
        self.run_script("setup-secrets", "--target", "cloudflare", "--rotate", "JWT_SECRET_KEY")
        self.assertEqual(sorted(self.bulk("login")[0]), ["JWT_SECRET_KEY", "JWT_SECRET_KEY_ROTATED_AT"])
        self.assertEqual(self.bulk("login")[0]["JWT_SECRET_KEY"], self.bulk("logout")[0]["JWT_SECRET_KEY"])
        self.assertEqual(self.bulk("webhook"), [])

    def test_rotating_the_proxy_key_keeps_the_old_one_as_previous_on_the_proxy_first(self):
        old = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68"
        self.state_file("railway-vars.json", json.dumps({"PROXY_HMAC_KEY": old}))
        for f in ("login", "logout", "webhook"):
            self.state_file(f"wrangler-secrets-{f}", "JWT_SECRET_KEY\nSECRET_KEY\nPROXY_HMAC_KEY\nOPENAI_API_KEY\n"
                            "EVOLUTION_API_KEY\nEVOLUTION_WEBHOOK_SECRET\n")
        r = self.run_script("setup-secrets", "--target", "railway,cloudflare", "--rotate", "PROXY_HMAC_KEY")
        writes = [(c["tool"], c["argv"][c["argv"].index("--set-from-stdin") + 1] if c["tool"] == "railway" else "bulk", c["stdin"])
                  for c in self.calls() if c["stdin"] is not None]
        self.assertEqual(writes[0], ("railway", "PROXY_HMAC_KEY_PREVIOUS", old))
        new = dict((n, v) for t, n, v in writes if t == "railway")["PROXY_HMAC_KEY"]
        self.assertNotEqual(new, old)
        self.assertEqual(self.bulk("webhook")[0]["PROXY_HMAC_KEY"], new)
        self.assertNotIn(old, r.stdout + r.stderr + self.all_argv_text())

    def test_generating_the_shared_proxy_key_for_the_edge_alone_is_refused(self):
        values = self.values_file(f"OPENAI_API_KEY={OPENAI}\nEVOLUTION_API_KEY={EVOLUTION}\n")
        r = self.run_script("setup-secrets", "--target", "cloudflare", "--values-file", values, expect=1)
        self.assertIn("PROXY_HMAC_KEY is shared by the edge and the proxy", r.stderr)
        self.assertEqual([c for c in self.calls() if c["stdin"] is not None], [])

    def test_a_malformed_provider_key_stops_everything_before_any_write(self):
        values = self.values_file("OPENAI_API_KEY=not-a-key-ZZmarker\nEVOLUTION_API_KEY=" + EVOLUTION + "\n")
        r = self.run_script("setup-secrets", "--target", "cloudflare,railway", "--values-file", values, expect=1)
        self.assertIn("refusing to write anything: OPENAI_API_KEY", r.stderr)
        self.assertNotIn("ZZmarker", r.stdout + r.stderr)
        self.assertEqual([c for c in self.calls() if c["stdin"] is not None], [])

    def test_a_required_provider_key_without_a_terminal_or_file_is_an_error(self):
        r = self.run_script("setup-secrets", "--target", "cloudflare,railway", expect=1, stdin="")
        self.assertIn("EVOLUTION_API_KEY is required for Worker webhook", r.stderr)

    def test_a_dry_run_prints_names_and_commands_only_and_calls_nothing(self):
        values = self.values_file(f"OPENAI_API_KEY={OPENAI}\nEVOLUTION_API_KEY={EVOLUTION}\n")
        r = self.run_script("setup-secrets", "--target", "cloudflare,railway", "--values-file", values, "--dry-run")
        self.assertEqual(self.calls(), [])
        self.assertIn("would run: wrangler secret bulk --env login <<< stdin: JWT_SECRET_KEY, JWT_SECRET_KEY_ROTATED_AT", r.stdout)
        self.assertNotIn(OPENAI, r.stdout + r.stderr)
        self.assertIsNone(re.search(r"[0-9a-f]{64}", r.stdout + r.stderr))

    def test_the_spin_target_writes_one_private_dotenv_of_spin_variables(self):
        values = self.values_file(f"OPENAI_API_KEY={OPENAI}\nEVOLUTION_API_KEY={EVOLUTION}\n")
        path = os.path.join(self.dir, "spin.env")
        self.run_script("setup-secrets", "--target", "spin,railway", "--values-file", values, "--spin-env-file", path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        text = open(path).read()
        self.assertIn(f"SPIN_VARIABLE_OPENAI_API_KEY={OPENAI}\n", text)
        self.assertRegex(text, r"SPIN_VARIABLE_JWT_SECRET_KEY=[A-Za-z0-9_-]{43}\n")
        # A second run finds them and writes nothing new.
        os.remove(self.log)
        self.state_file("railway-vars.json", json.dumps({"PROXY_HMAC_KEY": "00" * 32, "PROXY_HMAC_KEY_ROTATED_AT": "2026-01-01"}))
        self.run_script("setup-secrets", "--target", "spin,railway", "--spin-env-file", path)
        self.assertEqual(open(path).read(), text)


if __name__ == "__main__":
    unittest.main()
