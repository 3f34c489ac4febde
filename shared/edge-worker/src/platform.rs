//! The edge-core ports on Workers: key-value through the Durable Object client, vars and
//! secrets, `Date.now()`, `crypto.getRandomValues`, `fetch`, and console logs.

use std::rc::Rc;

use edge_core::ports::{Clock, HttpClient, LogSink, Platform, PortError, Random, Timer, Variables};
use edge_core::ratelimit::Leases;
use edge_core::{Bytes, Request, Response};

use crate::store::DoKv;

fn unavailable(what: &str, err: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("workers {what}: {err}"))
}

thread_local! {
    /// The rate-limit leases of this isolate: it serves many requests, so counts reserved
    /// from the Durable Object in one call serve the next requests of the same client.
    static LEASES: Rc<Leases> = Rc::new(Leases::default());
}

/// The ports for one Workers request.
pub struct WorkerPlatform {
    kv: DoKv,
    vars: WorkerVars,
    http: WorkerHttp,
    leases: Rc<Leases>,
}

impl WorkerPlatform {
    /// Ports over this request's `env`.
    pub fn new(env: worker::Env) -> Self {
        Self {
            kv: DoKv::new(env.clone()),
            vars: WorkerVars(env),
            http: WorkerHttp,
            leases: LEASES.with(Rc::clone),
        }
    }
}

/// Vars and secrets. Core names are lower snake case (Spin's rule); Workers bindings are the
/// same names in upper case, as operators write them in `.dev.vars` and `wrangler secret put`.
struct WorkerVars(worker::Env);

impl Variables for WorkerVars {
    fn get(&self, name: &str) -> Result<Option<String>, PortError> {
        let binding = name.to_ascii_uppercase();
        let value = match self.0.secret(&binding) {
            Ok(secret) => Some(secret.to_string()),
            Err(_) => self.0.var(&binding).ok().map(|v| v.to_string()),
        };
        Ok(value.filter(|v| !v.is_empty()))
    }
}

/// `Date.now()`: frozen during a request's computation, advances across I/O.
struct WorkerClock;

impl Clock for WorkerClock {
    fn now_unix_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
}

/// `crypto.getRandomValues`, through getrandom's `wasm_js` backend.
struct WorkerRandom;

impl Random for WorkerRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), PortError> {
        getrandom::fill(buf).map_err(|e| unavailable("random", e))
    }
}

/// Outbound `fetch`.
pub struct WorkerHttp;

impl HttpClient for WorkerHttp {
    async fn send(&self, req: Request) -> Result<Response, PortError> {
        let (parts, body) = req.into_parts();
        let req = crate::outbound(
            &parts.uri.to_string(),
            parts.method.as_str(),
            &worker::Headers::from(&parts.headers),
            (!body.is_empty()).then_some(body.as_ref()),
        )
        .map_err(|e| unavailable("build request", e))?;
        let mut resp = worker::Fetch::Request(req)
            .send()
            .await
            .map_err(|e| unavailable("fetch", e))?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| unavailable("fetch body", e))?;
        let mut out = http::Response::new(Bytes::from(bytes));
        *out.status_mut() = http::StatusCode::from_u16(resp.status_code())
            .map_err(|e| unavailable("fetch status", e))?;
        *out.headers_mut() = http::HeaderMap::from(resp.headers());
        Ok(out)
    }
}

/// `setTimeout` through workers-rs' `Delay`.
pub struct WorkerTimer;

impl Timer for WorkerTimer {
    async fn sleep(&self, ms: u64) {
        worker::Delay::from(std::time::Duration::from_millis(ms)).await;
    }
}

/// `console.log`, which Workers Logs and `wrangler tail` collect.
struct WorkerLog;

impl LogSink for WorkerLog {
    fn write(&self, line: &str) {
        worker::console_log!("{line}");
    }
}

impl Platform for WorkerPlatform {
    const RUNTIME: &'static str = "workers";
    type Kv = DoKv;
    type Http = WorkerHttp;
    type Timer = WorkerTimer;
    fn timer(&self) -> &WorkerTimer {
        &WorkerTimer
    }
    fn kv(&self) -> &DoKv {
        &self.kv
    }
    fn vars(&self) -> &dyn Variables {
        &self.vars
    }
    fn clock(&self) -> &dyn Clock {
        &WorkerClock
    }
    fn random(&self) -> &dyn Random {
        &WorkerRandom
    }
    fn http(&self) -> &WorkerHttp {
        &self.http
    }
    fn log(&self) -> &dyn LogSink {
        &WorkerLog
    }
    fn rate_leases(&self) -> Option<&Leases> {
        Some(&self.leases)
    }
}
