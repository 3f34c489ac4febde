"""scripts/validate-deployment against a local stand-in of a deployment (a stdlib HTTP server
answering like the edge functions, healthy or misconfigured), and --static on this
repository. The e2e suite runs the same script against the real runtimes."""

import json
import os
import subprocess
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ADMIN = "e6e57a5a8a2d3b410416cec46fce39b653ddd3cd57c3190da327f1c481412ba5"
SCRIPT = os.path.join(REPO, "scripts", "validate-deployment")
SECURITY = {
    "strict-transport-security": "max-age=63072000; includeSubDomains; preload",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin", "cross-origin-resource-policy": "same-origin",
    "cache-control": "no-store",
}


class Edge(BaseHTTPRequestHandler):
    mode = "healthy"
    hits = 0

    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype="application/json", extra=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("x-request-id", self.headers.get("x-request-id") or "generated-id-000")
        for k, v in {**SECURITY, **(extra or {})}.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        Edge.hits += 1
        if Edge.mode == "limited" and Edge.hits == 1:
            return self.answer(429, {"error": {"code": "rate_limited"}}, extra={"retry-after": "1"})
        if self.path in ("/health", "/api/v1/health"):
            if Edge.mode == "misconfigured":
                return self.answer(503, {"error": {"code": "misconfigured"}}, extra={"retry-after": "30"})
            return self.answer(200, {"status": "pass"}, "application/health+json")
        if Edge.mode.startswith("health-") and self.path.startswith("/health/"):
            return self.health_variant()
        self.answer(404, {"error": {"code": "not_found"}})

    def health_variant(self):
        """The readiness, comprehensive and secrets functions, per mode: health-warn (a weak
        secret), health-down (the proxy hangs), health-leaky (probes for anyone)."""
        health = "application/health+json"
        admin = self.headers.get("authorization") == f"Bearer {ADMIN}"
        path, _, query = self.path.partition("?")
        check = lambda status, **kw: [{"status": status, "time": "2026-12-01T00:00:00.000Z", **kw}]
        if path == "/health/readiness":
            if Edge.mode == "health-down":
                return self.answer(503, {"status": "fail", "checks": {
                    "proxy:responseTime": check("fail", output="timed out")}}, health, {"retry-after": "5"})
            return self.answer(200, {"status": "pass", "checks": {"kv:responseTime": check("pass")}}, health)
        if path == "/health/comprehensive":
            checks = {"kv:responseTime": check("pass"),
                      "config:secrets": check("warn", componentId="weak", output="1 weak")}
            if "probe=true" in query and (admin or Edge.mode == "health-leaky"):
                checks["openai:responseTime"] = check("pass")
            return self.answer(200, {"status": "warn", "checks": checks}, health)
        if path == "/health/secrets":
            if not admin:
                return self.answer(401, {"error": {"code": "unauthorized"}})
            return self.answer(200, {"status": "pass", "checks": {}}, health)
        self.answer(404, {"error": {"code": "not_found"}})

    def do_POST(self):
        self.answer(405, {"error": {"code": "method_not_allowed"}}, extra={"allow": "GET, HEAD"})


class ValidateDeployment(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), Edge)
        cls.base = f"http://127.0.0.1:{cls.server.server_address[1]}"
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()

    def run_script(self, *args):
        return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120)

    def setUp(self):
        Edge.mode, Edge.hits = "healthy", 0

    def test_a_healthy_deployment_passes_with_the_closing_line_the_e2e_suite_reads(self):
        r = self.run_script(self.base, "--production")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertNotIn("FAIL", r.stdout)
        self.assertIn(" 0 failed", r.stdout)
        self.assertIn("overall: healthy", r.stdout)

    def test_a_misconfigured_deployment_fails_naming_the_health_check(self):
        Edge.mode = "misconfigured"
        r = self.run_script(self.base, "--production")
        self.assertEqual(r.returncode, 1)
        self.assertIn("FAIL  GET /health answers 200", r.stdout)
        self.assertIn("overall: critical", r.stdout)

    def test_json_output_has_components_scores_and_counts(self):
        r = self.run_script(self.base, "--production", "--json")
        doc = json.loads(r.stdout)
        self.assertEqual((doc["schema_version"], doc["status"], doc["failed"]), (1, "healthy", 0))
        names = [c["name"] for c in doc["components"]]
        self.assertEqual(names[:4], ["liveness", "methods", "headers", "debug"])
        self.assertTrue(all(c["score"] in (None, 100) for c in doc["components"]))

    def test_a_429_during_ordinary_checks_is_waited_out(self):
        Edge.mode = "limited"
        r = self.run_script(self.base)
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_a_cors_check_from_an_origin_the_deployment_does_not_allow_fails(self):
        r = self.run_script(self.base, "--origin", "https://app.example.test")
        self.assertEqual(r.returncode, 1)
        self.assertIn("FAIL  preflight from https://app.example.test is allowed", r.stdout)

    def test_an_unreachable_target_is_critical_and_usage_errors_exit_2(self):
        r = self.run_script("http://127.0.0.1:9")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(self.run_script("not-a-url").returncode, 2)
        self.assertEqual(self.run_script("--bogus").returncode, 2)

    def test_readiness_and_comprehensive_are_used_and_a_warn_is_a_warning(self):
        Edge.mode = "health-warn"
        r = subprocess.run([SCRIPT, self.base, "--production", "--admin-token-env", "E2E_VD_ADMIN"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "E2E_VD_ADMIN": ADMIN})
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("PASS  GET /health/readiness answers 200 pass", r.stdout)
        self.assertIn("WARN  GET /health/comprehensive reports pass (warn: config:secrets[weak])", r.stdout)
        self.assertIn("PASS  GET /health/comprehensive?probe=true without a token probes nothing", r.stdout)
        self.assertIn("WARN  GET /health/comprehensive?probe=true as an admin reports pass", r.stdout)
        self.assertIn("PASS  GET /health/secrets without a token is refused", r.stdout)
        self.assertIn("PASS  GET /health/secrets with the admin token reports pass", r.stdout)
        self.assertIn("overall: warning", r.stdout)
        self.assertIn(" 0 failed", r.stdout)
        self.assertNotIn(ADMIN, r.stdout)

    def test_a_readiness_503_fails_naming_the_failing_component(self):
        Edge.mode = "health-down"
        r = self.run_script(self.base, "--production")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("FAIL  GET /health/readiness answers 200 pass (got 503: proxy:responseTime)", r.stdout)
        self.assertIn("PASS  GET /health/readiness 503 carries Retry-After", r.stdout)

    def test_probes_for_anyone_fail(self):
        Edge.mode = "health-leaky"
        r = self.run_script(self.base)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("FAIL  GET /health/comprehensive?probe=true without a token probes nothing "
                      "(openai:responseTime)", r.stdout)

    def test_the_proxy_profile_checks_its_health_route(self):
        r = self.run_script(self.base, "--profile", "proxy")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("PASS  GET /api/v1/health answers 200", r.stdout)
        self.assertIn("SKIP  GET /health/readiness", r.stdout)


if __name__ == "__main__":
    unittest.main()
