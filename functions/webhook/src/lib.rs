//! The webhook: Evolution API deliveries (`POST /webhook`, `POST /api/v1/webhook/evolution`
//! and their by-events forms `.../<event>`) answered by the AI assistant, the protected
//! re-drive route `POST /api/v1/webhook/redrive`, and on Workers a cron trigger running the
//! same re-drive. Everything lives in `edge_core::webhook`; the entry points only hand
//! requests to an adapter.

use edge_core::serve::Scheduled;
use edge_core::{webhook, Ctx, Error, Function, Platform, Request, Response};

/// The webhook function.
pub struct Webhook;

impl Function for Webhook {
    const NAME: &'static str = "webhook";
    const MAX_BODY_BYTES: usize = webhook::MAX_BODY_BYTES;
    /// Every delivery comes from the one Evolution server: a per-address limit would throttle
    /// the gateway itself. The per-sender limit (by WhatsApp contact) applies instead.
    const RATE_LIMITED: bool = false;

    async fn handle<P: Platform>(req: Request, ctx: &Ctx<'_, P>) -> Result<Response, Error> {
        webhook::handle(req, ctx).await
    }
}

impl Scheduled for Webhook {
    async fn scheduled<P: Platform>(ctx: &Ctx<'_, P>) {
        if let Err(e) = webhook::redrive(ctx).await {
            let mut f = serde_json::Map::new();
            f.insert("cause".into(), e.to_string().into());
            ctx.event(edge_core::log::Level::Warn, "webhook_redrive_failed", f);
        }
    }
}

#[cfg(feature = "spin")]
edge_spin::export!(Webhook);

#[cfg(feature = "cloudflare")]
edge_worker::export!(Webhook);
#[cfg(feature = "cloudflare")]
edge_worker::export_scheduled!(Webhook);
