// Railway Infrastructure as Code for the assistant-edge backend: the pg-proxy service and
// its Postgres. Successor of /railway.json (config-as-code), which Railway reads for existing
// services until 2026-12-01 and refuses for new ones; see services/pg-proxy/README.md.
// A service cannot be managed by both files: migrate it (`railway config migrate`) before
// applying this one. Type-checked by scripts/test-proxy (`npm run typecheck`).
import { defineRailway, empty, postgres, preserve, project, service } from "railway/iac";

export default defineRailway((ctx) => {
  const production = ctx.isEnvironment("production");

  const db = postgres("postgres");

  const proxy = service("pg-proxy", {
    // No GitHub source: `railway up` uploads this repository (minus .railwayignore) and
    // Railway builds the root Dockerfile.
    source: empty(),
    build: {
      builder: "DOCKERFILE",
      dockerfilePath: "Dockerfile",
      watchPatterns: ["Dockerfile", "services/pg-proxy/**", "shared/proxy-auth/**", "shared/log-redact/**"],
    },
    deploy: {
      startCommand: "/usr/local/bin/pg-proxy serve",
      healthcheckPath: "/api/v1/health",
      healthcheckTimeout: 300,
      restartPolicyType: "ON_FAILURE",
      restartPolicyMaxRetries: 3,
      // SIGTERM to SIGKILL: longer than PROXY_SHUTDOWN_GRACE_SECS so in-flight requests end.
      drainingSeconds: 30,
    },
    replicas: 2,
    env: {
      // Railway's private-network URL of the Postgres above; never a literal.
      DATABASE_URL: db.env.DATABASE_URL,
      // Shared with the edge functions (which sign with it), so it is set once by
      // scripts/setup-secrets and kept here as whatever value the environment holds.
      PROXY_HMAC_KEY: preserve(),
      // Signature audience: not set here, so the proxy uses the RAILWAY_PUBLIC_DOMAIN that
      // Railway injects. With a custom domain, set PROXY_AUDIENCE to it in the dashboard (the
      // edge signs for the host of its PROXY_URL).
      DB_POOL_MIN_SIZE: "5",
      DB_POOL_MAX_SIZE: "20",
      // 2 replicas x (20 + 25) = 90 connections at the very most, under Postgres's default
      // max_connections of 100 with room for migrations and an operator session. The
      // service's own default (40) would allow 120.
      DB_POOL_MAX_OVERFLOW: "25",
      DB_POOL_TIMEOUT: "30",
      PROXY_SHUTDOWN_GRACE_SECS: "20",
      ENVIRONMENT: production ? "production" : (ctx.environment ?? "development"),
      DEBUG: production ? "false" : "true",
    },
  });

  return project("assistant-edge", {
    resources: [db, proxy],
  });
});
