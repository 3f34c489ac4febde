"""scripts/changed-functions on a scratch git repository shaped like this one: a workspace
with shared crates, functions, the store host, a test crate with dev-dependencies, a proxy
in its own workspace, wrangler.toml envs and railway.json watch patterns."""

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO, "scripts", "changed-functions")


def crate(name, deps=(), dev_deps=()):
    lines = [f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]']
    lines += [f'{d} = {{ path = "{p}" }}' for d, p in deps]
    if dev_deps:
        lines.append("\n[dev-dependencies]")
        lines += [f'{d} = {{ path = "{p}" }}' for d, p in dev_deps]
    return "\n".join(lines) + "\n"


LOCK = """version = 4

[[package]]
name = "fn-health"
version = "0.1.0"
dependencies = ["edge-core"]

[[package]]
name = "fn-login"
version = "0.1.0"
dependencies = ["edge-core", "proxy-auth", "hmac"]

[[package]]
name = "edge-core"
version = "0.1.0"

[[package]]
name = "proxy-auth"
version = "0.1.0"

[[package]]
name = "hmac"
version = "{hmac}"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "{checksum}"
"""

WRANGLER = """name = "assistant-edge"
compatibility_date = "2026-04-01"

[env.store]
name = "assistant-edge-store"
[env.store.build]
watch_dir = "shared/edge-worker-host"

[env.health]
name = "assistant-edge-health"
[env.health.vars]
ENVIRONMENT = "development"

[env.login]
name = "assistant-edge-login"
[env.login.vars]
ENVIRONMENT = "development"

[env.router]
name = "assistant-edge-dev-router"
[env.router.vars]
ROUTES = '{"/health":"HEALTH"}'
"""


class ChangedFunctions(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="changed-functions-")
        self.write("Cargo.toml", textwrap.dedent("""\
            [workspace]
            resolver = "2"
            members = ["shared/edge-core", "shared/edge-worker", "shared/edge-worker-host",
                       "shared/proxy-auth", "functions/health", "functions/login", "tests/e2e"]
            exclude = ["services/pg-proxy"]

            [profile.release]
            opt-level = "z"
            """))
        files = {
            "shared/edge-core": crate("edge-core"),
            "shared/edge-worker": crate("edge-worker", [("edge-core", "../edge-core")]),
            "shared/edge-worker-host": crate("edge-worker-host", [("edge-worker", "../edge-worker")]),
            "shared/proxy-auth": crate("proxy-auth"),
            "functions/health": crate("fn-health", [("edge-core", "../../shared/edge-core"),
                                                    ("edge-worker", "../../shared/edge-worker")]),
            "functions/login": crate("fn-login", [("edge-core", "../../shared/edge-core"),
                                                  ("proxy-auth", "../../shared/proxy-auth")]),
            "tests/e2e": crate("e2e", dev_deps=[("fn-login", "../../functions/login")]),
        }
        for d, manifest in files.items():
            self.write(f"{d}/Cargo.toml", manifest)
            self.write(f"{d}/src/lib.rs", "//! x\n")
        self.write("services/pg-proxy/Cargo.toml",
                   "[workspace]\n\n" + crate("pg-proxy", [("proxy-auth", "../../shared/proxy-auth")]))
        self.write("services/pg-proxy/src/lib.rs", "//! x\n")
        self.write("Cargo.lock", LOCK.format(hmac="0.12.1", checksum="aa" * 32))
        self.write("wrangler.toml", WRANGLER)
        self.write("railway.json", json.dumps({"build": {"watchPatterns": [
            "Dockerfile", "services/pg-proxy/**", "shared/proxy-auth/**"]}}))
        self.write("Dockerfile", "FROM scratch\n")
        self.write("spin.toml", "spin_manifest_version = 2\n")
        self.write("README.md", "# scratch\n")
        os.makedirs(os.path.join(self.dir, "scripts"))
        shutil.copy(SCRIPT, os.path.join(self.dir, "scripts", "changed-functions"))
        self.git("init", "-q", "-b", "main")
        self.commit("base")
        self.base = self.git("rev-parse", "HEAD").strip()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, path, text):
        full = os.path.join(self.dir, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)

    def append(self, path, text):
        with open(os.path.join(self.dir, path), "a") as f:
            f.write(text)

    def git(self, *args):
        env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                   GIT_COMMITTER_EMAIL="t@t")
        return subprocess.run(["git", *args], cwd=self.dir, check=True, capture_output=True,
                              text=True, env=env).stdout

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def run_script(self, *args, expect=0):
        r = subprocess.run([os.path.join(self.dir, "scripts", "changed-functions"), *args],
                           cwd=self.dir, capture_output=True, text=True)
        self.assertEqual(r.returncode, expect, r.stderr)
        return json.loads(r.stdout) if expect == 0 else r

    def change(self, path, text="// changed\n"):
        self.append(path, text)
        self.commit(f"change {path}")
        return self.run_script(self.base, "HEAD")

    def units(self, out):
        return (out["functions"], out["store"], out["proxy"], out["spin"])

    def test_a_change_in_edge_core_redeploys_every_function_and_the_store(self):
        out = self.change("shared/edge-core/src/lib.rs")
        self.assertEqual(self.units(out), (["health", "login"], True, False, True))
        self.assertIn("shared/edge-core/src/lib.rs (dependency shared/edge-core)", out["reasons"]["login"])

    def test_a_change_in_one_function_redeploys_only_it_and_the_spin_app(self):
        out = self.change("functions/login/src/lib.rs")
        self.assertEqual(self.units(out), (["login"], False, False, True))

    def test_a_change_in_the_worker_adapter_reaches_health_and_the_store_not_login(self):
        out = self.change("shared/edge-worker/src/lib.rs")
        self.assertEqual(self.units(out), (["health"], True, False, True))

    def test_a_change_in_proxy_auth_redeploys_the_proxy_and_its_edge_callers(self):
        out = self.change("shared/proxy-auth/src/lib.rs")
        self.assertEqual(self.units(out), (["login"], False, True, True))

    def test_a_change_in_the_proxy_redeploys_only_the_proxy(self):
        out = self.change("services/pg-proxy/src/lib.rs")
        self.assertEqual(self.units(out), ([], False, True, False))

    def test_the_dockerfile_is_a_proxy_change_through_railway_watch_patterns(self):
        out = self.change("Dockerfile", "# new base\n")
        self.assertEqual(self.units(out), ([], False, True, False))
        self.assertEqual(out["reasons"]["proxy"], ["Dockerfile (railway.json watchPatterns)"])

    def test_a_wrangler_env_section_redeploys_that_worker_only_and_the_router_nothing(self):
        text = open(os.path.join(self.dir, "wrangler.toml")).read()
        self.write("wrangler.toml", text.replace(
            '[env.login.vars]\nENVIRONMENT = "development"', '[env.login.vars]\nENVIRONMENT = "staging"'
        ).replace('{"/health":"HEALTH"}', '{"/health":"HEALTH","/x":"HEALTH"}'))
        self.commit("login vars, router routes")
        out = self.run_script(self.base, "HEAD")
        self.assertEqual(self.units(out), (["login"], False, False, True))

    def test_a_top_level_wrangler_setting_redeploys_every_worker(self):
        text = open(os.path.join(self.dir, "wrangler.toml")).read()
        self.write("wrangler.toml", text.replace("2026-04-01", "2026-05-01"))
        self.commit("compat date")
        out = self.run_script(self.base, "HEAD")
        self.assertEqual(self.units(out), (["health", "login"], True, False, True))

    def test_a_locked_dependency_bump_redeploys_only_the_functions_reaching_it(self):
        self.write("Cargo.lock", LOCK.format(hmac="0.12.2", checksum="bb" * 32))
        self.commit("bump hmac")
        out = self.run_script(self.base, "HEAD")
        self.assertEqual(self.units(out), (["login"], False, False, True))
        self.assertEqual(out["reasons"]["login"], ["Cargo.lock (locked dependencies)"])

    def test_a_release_profile_change_redeploys_everything_built_but_members_do_not(self):
        text = open(os.path.join(self.dir, "Cargo.toml")).read()
        self.write("Cargo.toml", text.replace('"tests/e2e"]', '"tests/e2e", "tools/x"]'))
        self.write("tools/x/Cargo.toml", crate("x", [("edge-core", "../../shared/edge-core")]))
        self.write("tools/x/src/main.rs", "fn main() {}\n")
        self.commit("members only: a native tool")
        self.assertEqual(self.units(self.run_script(self.base, "HEAD")), ([], False, False, False))
        self.write("Cargo.toml", text.replace('opt-level = "z"', 'opt-level = "s"'))
        self.commit("profile")
        out = self.run_script(self.base, "HEAD")
        self.assertEqual(self.units(out), (["health", "login"], True, False, True))

    def test_docs_tests_and_dev_dependencies_deploy_nothing(self):
        self.append("README.md", "more\n")
        self.append("tests/e2e/src/lib.rs", "// more\n")
        self.commit("docs and tests")
        out = self.run_script(self.base, "HEAD")
        self.assertEqual(self.units(out), ([], False, False, False))
        self.assertEqual(out["reasons"], {})

    def test_spin_manifest_alone_pushes_the_spin_app(self):
        out = self.change("spin.toml", "# route\n")
        self.assertEqual(self.units(out), ([], False, False, True))

    def test_a_new_function_is_found_without_any_list_to_edit(self):
        text = open(os.path.join(self.dir, "Cargo.toml")).read()
        self.write("Cargo.toml", text.replace('"functions/login",', '"functions/login", "functions/logout",'))
        self.write("functions/logout/Cargo.toml", crate("fn-logout", [("edge-core", "../../shared/edge-core")]))
        self.write("functions/logout/src/lib.rs", "//! x\n")
        self.commit("add logout")
        out = self.run_script(self.base, "HEAD")
        self.assertEqual(out["functions"], ["logout"])
        self.assertEqual(out["all_functions"], ["health", "login", "logout"])

    def test_an_unusable_base_means_everything(self):
        out = self.run_script("0" * 40, "HEAD")
        self.assertEqual(self.units(out), (["health", "login"], True, True, True))
        out = self.run_script("deadbeef" * 5, "HEAD")
        self.assertTrue(out["proxy"])

    def test_head_must_be_checked_out(self):
        self.change("functions/login/src/lib.rs")
        r = self.run_script(self.base, self.base, expect=1)
        self.assertIn("not checked out", r.stderr)

    def test_manual_lists_are_checked_against_the_derived_units(self):
        out = self.run_script("--functions", "login,proxy")
        self.assertEqual(self.units(out), (["login"], False, True, True))
        r = self.run_script("--functions", "nope", expect=2)
        self.assertIn("unknown unit", r.stderr)
        self.assertEqual(self.units(self.run_script("--all")), (["health", "login"], True, True, True))


if __name__ == "__main__":
    unittest.main()
