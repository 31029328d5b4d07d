//! The gateway's routes: HLS under `/{app}/{stream}/`, `/api/streams`,
//! `/metrics`; everything else is a clear 404 or 405.

use crate::hls::HlsOrigin;
use crate::message::{Method, Request, Response};
use crate::{stats, Handler};
use arcly_core::engine::{Action, Engine, Request as EngineRequest, StreamKey};
use arcly_core::session::Rejection;
use arcly_core::time::Instant;
use std::task::{Context, Poll};

/// Routes requests to the HLS origin and the stats endpoints, checking
/// `?token=` through the engine's authenticator for media.
#[derive(Debug, Clone)]
pub struct Router {
    engine: Engine,
    hls: HlsOrigin,
    unix_base: u64,
}

impl Router {
    /// Routes for `engine`'s streams, served from `hls`. `unix_base` is the
    /// wall clock at the host's `Instant::ZERO`, for token expiry.
    pub fn new(engine: Engine, hls: HlsOrigin, unix_base: u64) -> Self {
        Router {
            engine,
            hls,
            unix_base,
        }
    }
}

impl Handler for Router {
    fn poll_response(&self, now: Instant, req: &Request, cx: &mut Context<'_>) -> Poll<Response> {
        if !matches!(req.method, Method::Get | Method::Head) {
            return Poll::Ready(
                Response::text(405, "only GET and HEAD are served here")
                    .with_header("Allow", "GET, HEAD, OPTIONS"),
            );
        }
        match req.path.as_str() {
            "/api/streams" => {
                return Poll::Ready(
                    Response::new(200, "application/json", stats::streams_json(&self.engine, now))
                        .with_header("Cache-Control", "no-cache"),
                )
            }
            "/metrics" => {
                return Poll::Ready(Response::new(
                    200,
                    "text/plain; version=0.0.4",
                    stats::metrics(&self.engine),
                ))
            }
            "/" => {
                return Poll::Ready(Response::text(
                    200,
                    "arcly: HLS at /APP/STREAM/index.m3u8, stream list at /api/streams, metrics at /metrics",
                ))
            }
            _ => {}
        }
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let [app, stream, name] = parts[..] else {
            return Poll::Ready(Response::text(
                404,
                "not found: media paths are /APP/STREAM/FILE",
            ));
        };
        if name.is_empty() || name.starts_with('.') {
            return Poll::Ready(Response::text(400, "bad file name"));
        }
        let Ok(key) = StreamKey::new(app, stream) else {
            return Poll::Ready(Response::text(400, "bad stream name"));
        };
        let token = req.query_param("token");
        let ereq = EngineRequest {
            key: key.clone(),
            token,
            protocol: "hls",
            peer: None,
            unix_time: self.unix_base + now.as_micros() / 1_000_000,
        };
        if let Err(e) = self.engine.authorize(&ereq, Action::Play) {
            let status = match Rejection::from(&e) {
                Rejection::Unauthorized => 401,
                Rejection::Forbidden => 403,
                _ => 503,
            };
            return Poll::Ready(Response::text(status, &e.to_string()));
        }
        if !self.hls.has(&key) {
            return Poll::Ready(Response::text(
                404,
                &format!("stream {key} is not being published"),
            ));
        }
        self.hls.poll_get(&key, name, req, cx)
    }
}
