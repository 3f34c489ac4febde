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
import { parseArgs } from "node:util";
import { unstable_startWorker } from "wrangler";

function usage(code) {
  (code ? process.stderr : process.stdout).write(
    "Usage: node scripts/wrangler-serve.mjs -c CONFIG [--env ENV] --port PORT [--persist-to DIR]\n" +
      "         [--var KEY:VALUE]... [--log-level debug|info|log|warn|error|none]\n" +
      "Serves CONFIG's Worker on 127.0.0.1:PORT like `wrangler dev`, with the devtools inspector off.\n",
  );
  process.exit(code);
}
function fail(message) {
  console.error(`wrangler-serve: ${message}`);
  usage(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      help: { type: "boolean", short: "h" },
      config: { type: "string", short: "c" },
      env: { type: "string" },
      port: { type: "string" },
      "persist-to": { type: "string" },
      "log-level": { type: "string", default: "warn" },
      var: { type: "string", multiple: true, default: [] },
    },
  }));
} catch (e) {
  fail(e.message);
}
if (args.help) usage(0);
const port = Number(args.port);
if (!args.config || !Number.isInteger(port) || port <= 0) {
  fail("-c CONFIG and --port PORT are required");
}
const vars = {};
for (const kv of args.var) {
  const at = kv.indexOf(":");
  if (at < 1) fail(`--var wants KEY:VALUE, not ${kv}`);
  vars[kv.slice(0, at)] = { type: "plain_text", value: kv.slice(at + 1) };
}

const worker = await unstable_startWorker({
  config: args.config,
  env: args.env,
  bindings: vars,
  dev: {
    server: { hostname: "127.0.0.1", port },
    inspector: false,
    persist: args["persist-to"],
    logLevel: args["log-level"],
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
