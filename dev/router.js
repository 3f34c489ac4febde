// Dev-only router Worker: serves every edge function on one local port, the way Cloudflare
// routes map paths to Workers in production. The route table comes from the ROUTES var in
// wrangler.toml ([env.router.vars]), kept equal to spin.toml's triggers by a test, and is
// matched the way Spin matches: an exact route first, then the longest `/prefix/...` route
// (`/...` catches every other path, so unknown paths get the functions' structured 404).
function route(routes, pathname) {
  if (Object.hasOwn(routes, pathname)) return routes[pathname];
  let best = null;
  let bestLength = -1;
  for (const [pattern, binding] of Object.entries(routes)) {
    if (!pattern.endsWith("/...")) continue;
    const prefix = pattern.slice(0, -"/...".length);
    const matches = pathname === prefix || pathname.startsWith(`${prefix}/`);
    if (matches && prefix.length > bestLength) {
      best = binding;
      bestLength = prefix.length;
    }
  }
  return best;
}

export default {
  async fetch(request, env) {
    const routes = JSON.parse(env.ROUTES);
    const { pathname } = new URL(request.url);
    const binding = route(routes, pathname);
    if (binding && env[binding]) {
      return env[binding].fetch(request);
    }
    // Only reached when the table has no catch-all or a binding is missing: a router bug.
    const body = {
      error: { code: "not_found", message: "No such route.", request_id: null },
    };
    return new Response(JSON.stringify(body), {
      status: 404,
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    });
  },
};
