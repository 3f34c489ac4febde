//! Who counts as an admin on the admin-only health routes (`/health/secrets`, the outbound
//! probes of `/health/comprehensive`): a request with `Authorization: Bearer <ADMIN_TOKEN>`,
//! compared in constant time, or with an admin session ([`crate::session`]: a valid token and
//! its record, role `admin`) when this deployment has sessions (`JWT_SECRET_KEY`).
//!
//! Everything else is "not an admin" ([`check`] answers `Ok(None)`): no credentials, a wrong
//! token, an expired, revoked or idle session, a staff session. Callers turn that into 401
//! ([`require`]) or ignore the request's admin-only options; either way the answer never says
//! which of these it was. A session that cannot be checked because the store is down is 503,
//! never "admin".

use crate::{session, Ctx, Error, Platform, Request};

/// How a request proved it is an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    /// It carried the deployment's `ADMIN_TOKEN`.
    Token,
    /// It carried the session of this admin user (the proxy's user id).
    Session {
        /// The user id (`sub`), never the username: this goes to logs and audit records.
        user_id: String,
    },
}

impl Admin {
    /// The actor as logs and audit records name it: `admin-token` or `user:<id>`.
    pub fn actor(&self) -> String {
        match self {
            Self::Token => "admin-token".to_owned(),
            Self::Session { user_id } => format!("user:{user_id}"),
        }
    }
}

/// Whether `req` comes from an admin (see the module docs). `Err` only when a session had to
/// be checked and could not be (store down: [`Error::Unavailable`]).
pub async fn check<P: Platform>(ctx: &Ctx<'_, P>, req: &Request) -> Result<Option<Admin>, Error> {
    let Some((token, from_cookie)) = session::token_of(req) else {
        return Ok(None);
    };
    // The admin token is a header credential only: a cookie is sent by the browser on its own.
    if !from_cookie {
        if let Some(admin) = ctx.config.secret("ADMIN_TOKEN") {
            // Constant time over equal lengths; a different length is unequal at once (the
            // token's length is no secret: the catalog fixes its shape).
            if proxy_auth::constant_time_eq(token.as_bytes(), admin.expose().as_bytes()) {
                return Ok(Some(Admin::Token));
            }
        }
    }
    if ctx.config.secret("JWT_SECRET_KEY").is_none() {
        // No sessions in this deployment: nothing else can make an admin.
        return Ok(None);
    }
    match session::check(ctx, req).await {
        Ok(s) if s.record.role == "admin" => Ok(Some(Admin::Session {
            user_id: s.record.sub,
        })),
        Ok(_) | Err(Error::Unauthorized | Error::Forbidden) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Like [`check`], but anything other than an admin is [`Error::Unauthorized`]: the same 401
/// body as every other 401.
pub async fn require<P: Platform>(ctx: &Ctx<'_, P>, req: &Request) -> Result<Admin, Error> {
    check(ctx, req).await?.ok_or(Error::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::memory::{block_on, MemoryPlatform};
    use crate::session::{Custom, Record, Settings};
    use crate::Bytes;
    use http::HeaderValue;

    const ADMIN: &str = "c17fa154fb3f9bda63578d80fc18f0d190f8abf0cf0a76c1c5288ca01a67226c";
    const JWT: &str = "7f079d6523b492c8d635eeaf7693828d844dd855f06f6cec0bf5bfded42f8b68";

    fn platform(with_sessions: bool) -> MemoryPlatform {
        let p = MemoryPlatform::default();
        p.vars.set("environment", "production");
        p.vars.set("trusted_hosts", "api.example.test");
        p.vars.set("admin_token", ADMIN);
        if with_sessions {
            p.vars.set("jwt_secret_key", JWT);
        }
        p
    }

    fn req(authorization: Option<&str>) -> Request {
        let mut r = Request::new(Bytes::new());
        if let Some(a) = authorization {
            r.headers_mut().insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(a).unwrap_or(HeaderValue::from_static("x")),
            );
        }
        r
    }

    fn check_with(p: &MemoryPlatform, r: &Request) -> Result<Option<Admin>, Error> {
        let cfg = load(p, "health-secrets", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let ctx = Ctx::new(p, "req-admin-1".into(), "health-secrets", &cfg);
        block_on(check(&ctx, r))
    }

    /// A session token and its record, as login would have stored them.
    fn session_token(p: &MemoryPlatform, role: &str) -> String {
        let cfg = load(p, "health-secrets", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let settings = Settings::from_config(&cfg).unwrap_or_else(|e| panic!("{e:?}"));
        let now_ms = crate::ports::Clock::now_unix_ms(&p.clock);
        let jti = if role == "admin" { "a" } else { "b" }.repeat(32);
        let token = settings
            .sign(
                "42",
                &jti,
                Custom {
                    role: role.into(),
                    name: "ana".into(),
                    gen: 0,
                },
                now_ms / 1000,
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        let record = Record {
            sub: "42".into(),
            username: "ana".into(),
            role: role.into(),
            gen: 0,
            created_ms: now_ms,
            last_seen_ms: now_ms,
            expires_ms: now_ms + 3_600_000,
            idle_ms: 1_800_000,
        };
        let value = record.encode();
        block_on(crate::ports::KeyValue::set(
            &p.kv,
            &session::record_key(&jti),
            &value,
            None,
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        token
    }

    #[test]
    fn the_admin_token_as_a_bearer_makes_an_admin() {
        let p = platform(false);
        let r = check_with(&p, &req(Some(&format!("Bearer {ADMIN}"))));
        assert_eq!(r, Ok(Some(Admin::Token)));
    }

    #[test]
    fn a_missing_wrong_or_differently_sized_token_is_not_an_admin() {
        let p = platform(false);
        for auth in [
            None,
            Some("Bearer wrong".to_owned()),
            Some(format!("Bearer {}", &ADMIN[..63])),
            Some(format!("Bearer {ADMIN}0")),
            Some(format!("Basic {ADMIN}")),
        ] {
            assert_eq!(check_with(&p, &req(auth.as_deref())), Ok(None), "{auth:?}");
        }
    }

    #[test]
    fn the_admin_token_in_the_session_cookie_does_not_count() {
        let p = platform(true);
        let mut r = req(None);
        r.headers_mut().insert(
            http::header::COOKIE,
            HeaderValue::from_str(&format!("{}={ADMIN}", session::COOKIE))
                .unwrap_or(HeaderValue::from_static("x")),
        );
        assert_eq!(check_with(&p, &r), Ok(None));
    }

    #[test]
    fn an_admin_session_counts_and_a_staff_session_does_not() {
        let p = platform(true);
        let admin = session_token(&p, "admin");
        let staff = session_token(&p, "staff");
        assert_eq!(
            check_with(&p, &req(Some(&format!("Bearer {admin}")))),
            Ok(Some(Admin::Session {
                user_id: "42".into()
            }))
        );
        assert_eq!(
            check_with(&p, &req(Some(&format!("Bearer {staff}")))),
            Ok(None)
        );
    }

    #[test]
    fn a_session_that_cannot_be_checked_is_503_never_admin() {
        let p = platform(true);
        let admin = session_token(&p, "admin");
        p.kv.down.set(true);
        let r = check_with(&p, &req(Some(&format!("Bearer {admin}"))));
        assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    }

    #[test]
    fn require_turns_anything_else_into_the_plain_401() {
        let p = platform(false);
        let cfg = load(&p, "health-secrets", &[]).unwrap_or_else(|e| panic!("{e:?}"));
        let ctx = Ctx::new(&p, "req-admin-2".into(), "health-secrets", &cfg);
        assert_eq!(
            block_on(require(&ctx, &req(Some("Bearer nope")))),
            Err(Error::Unauthorized)
        );
        assert_eq!(
            block_on(require(&ctx, &req(Some(&format!("Bearer {ADMIN}"))))),
            Ok(Admin::Token)
        );
    }
}
