#!/usr/bin/env node
// Serves one Worker the way `wrangler dev` does (wrangler's own dev server, workerd, the same
// config, --env, --var and dev registry), with wrangler's devtools inspector off.
//
// Why: the `wrangler dev` CLI always attaches its inspector to the runtime and relays every
// `console.log` through it (V8 serialises the call with its stack for the DevTools protocol,
// a proxy Worker forwards it, wrangler's Node process parses and source-maps it). That relay is
// a development tool's, absent on Cloudflare's edge, and on a 2-core machine it costs more than
// the Worker's own work per log line (bench/edge.md measures it). scripts/bench-edge serves the
// Workers it compares through this launcher, and keeps one `wrangler dev` CLI row beside them.
//
// Usage: node scripts/wrangler-serve.mjs -c CONFIG [--env ENV] --port PORT [--persist-to DIR]
//          [--var KEY:VALUE]... [--log-level LEVEL]
// Runs until SIGTERM or SIGINT. The dev registry is WRANGLER_REGISTRY_PATH's, as for the CLI.
import { unstable_startWorker } from "wrangler";

function usage(code) {
  (code ? process.stderr : process.stdout).write(
    "Usage: node scripts/wrangler-serve.mjs -c CONFIG [--env ENV] --port PORT [--persist-to DIR]\n" +
      "         [--var KEY:VALUE]... [--log-level debug|info|log|warn|error|none]\n" +
      "Serves CONFIG's Worker on 127.0.0.1:PORT like `wrangler dev`, with the devtools inspector off.\n",
  );
  process.exit(code);
}

const opts = { vars: {}, logLevel: "warn" };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const flag = argv[i];
  const value = () => {
    if (i + 1 >= argv.length) {
      console.error(`wrangler-serve: ${flag} needs a value`);
      usage(2);
    }
    return argv[++i];
  };
  switch (flag) {
    case "-h":
    case "--help":
      usage(0);
      break;
    case "-c":
    case "--config":
      opts.config = value();
      break;
    case "--env":
      opts.env = value();
      break;
    case "--port":
      opts.port = Number(value());
      break;
    case "--persist-to":
      opts.persist = value();
      break;
    case "--log-level":
      opts.logLevel = value();
      break;
    case "--var": {
      const kv = value();
      const at = kv.indexOf(":");
      if (at < 1) {
        console.error(`wrangler-serve: --var wants KEY:VALUE, not ${kv}`);
        usage(2);
      }
      opts.vars[kv.slice(0, at)] = { type: "plain_text", value: kv.slice(at + 1) };
      break;
    }
    default:
      console.error(`wrangler-serve: unknown argument ${flag}`);
      usage(2);
  }
}
if (!opts.config || !Number.isInteger(opts.port) || opts.port <= 0) {
  console.error("wrangler-serve: -c CONFIG and --port PORT are required");
  usage(2);
}

const worker = await unstable_startWorker({
  config: opts.config,
  env: opts.env,
  bindings: opts.vars,
  dev: {
    server: { hostname: "127.0.0.1", port: opts.port },
    inspector: false,
    persist: opts.persist,
    logLevel: opts.logLevel,
    registry: process.env.WRANGLER_REGISTRY_PATH,
  },
});
await worker.ready;
// The same line the CLI prints, which scripts wait for.
console.log(`[wrangler-serve] Ready on ${(await worker.url).href} (inspector off)`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await worker.dispose().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
