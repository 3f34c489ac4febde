//! `POST /api/v1/auth/login`, `POST /api/v1/auth/refresh`, `GET /api/v1/auth/session`: staff
//! sessions. The flows live in `edge_core::auth`; this crate only names the function and its
//! limits, and hands requests to an adapter.

use edge_core::{auth, Ctx, Error, Function, Platform, Request, Response};

/// The login function.
pub struct Login;

impl Function for Login {
    const NAME: &'static str = "login";
    const MAX_BODY_BYTES: usize = auth::MAX_LOGIN_BODY;
    // Brute-force protection must not lapse when the counter store is down.
    const FAIL_CLOSED: bool = true;

    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        auth::login_routes(req, ctx).await
    }
}

#[cfg(feature = "spin")]
edge_spin::export!(Login);

#[cfg(feature = "cloudflare")]
edge_worker::export!(Login);
