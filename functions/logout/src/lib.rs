//! `POST /api/v1/auth/logout` and `POST /api/v1/auth/logout-all`: revocation that takes effect
//! at once. The flows live in `edge_core::auth`; this crate only names the function and hands
//! requests to an adapter.

use edge_core::{auth, Ctx, Error, Function, Platform, Request, Response};

/// The logout function.
pub struct Logout;

impl Function for Logout {
    const NAME: &'static str = "logout";
    const MAX_BODY_BYTES: usize = 1024;
    const FAIL_CLOSED: bool = true;

    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        auth::logout_routes(req, ctx).await
    }
}

#[cfg(feature = "spin")]
edge_spin::export!(Logout);

#[cfg(feature = "cloudflare")]
edge_worker::export!(Logout);
