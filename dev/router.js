// Dev-only router Worker: serves every edge function on one local port by exact path, the way
// Cloudflare routes map paths to Workers in production. The route table comes from the ROUTES
// var in wrangler.toml ([env.router.vars]), kept equal to spin.toml's triggers by a test.
export default {
  async fetch(request, env) {
    const routes = JSON.parse(env.ROUTES);
    const { pathname } = new URL(request.url);
    const binding = routes[pathname];
    if (binding && env[binding]) {
      return env[binding].fetch(request);
    }
    const body = {
      error: { code: "not_found", message: "No such route.", request_id: null },
    };
    return new Response(JSON.stringify(body), {
      status: 404,
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    });
  },
};
