//! Push relays: every stream published under a key that a push rule
//! matches (`--push PATTERN=URL`, a path's `push = [...]`) is published
//! again to the rule's RTMP URL by our RTMP client, playing the local
//! stream as any player does (from the GOP cache's key frame, never
//! holding the publisher back: a target that cannot keep up is evicted
//! for lag like a slow player, and called again). A push that ends
//! (the target gone, refused, evicted) calls again with backoff (1 s,
//! doubling to 30 s) for as long as the local stream lives.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcly_core::engine::{Action, Engine, StreamKey};
use arcly_rtmp::{ClientMode, ClientTarget};
use arcly_tokio::{Clock, ListenerConfig, Log, ShutdownSignal};

use crate::relay;

/// The protocol name a push plays its local stream under: the gateway's
/// authenticator lets it through (an operator configured it), and the
/// logs name it.
pub const PROTOCOL: &str = "push";

/// One push rule: keys matching `pattern` go to `url`, with `{app}` and
/// `{stream}` replaced by the key's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRule {
    /// A key, or a pattern with `*` (`live/*`).
    pub pattern: String,
    /// `rtmp://HOST[:PORT]/APP/STREAM`, with `{app}` and `{stream}`.
    pub url: String,
}

impl PushRule {
    /// `PATTERN=URL` (`--push`).
    pub fn parse(v: &str) -> Result<PushRule, String> {
        let (pattern, url) = v
            .split_once('=')
            .ok_or("PATTERN=rtmp://HOST/APP/{stream} is needed")?;
        PushRule::new(pattern, url)
    }

    /// A rule for keys matching `pattern`, checked: an RTMP URL, and one
    /// that names `{stream}` when the pattern matches more than one key.
    pub fn new(pattern: &str, url: &str) -> Result<PushRule, String> {
        if pattern.is_empty() {
            return Err("the pattern is empty".into());
        }
        let sample = url.replace("{app}", "app").replace("{stream}", "stream");
        if ClientTarget::parse(&sample).is_none() {
            return Err(format!(
                "not an RTMP URL with an application and a stream: {url:?}"
            ));
        }
        if pattern.contains('*') && !url.contains("{stream}") {
            return Err(format!(
                "{url:?} would take every stream of {pattern:?} under one name: put {{stream}} in it"
            ));
        }
        Ok(PushRule {
            pattern: pattern.into(),
            url: url.into(),
        })
    }

    /// The URL for `key`, if the rule takes it.
    pub fn target(&self, key: &StreamKey) -> Option<String> {
        crate::config::glob(self.pattern.as_bytes(), key.to_string().as_bytes()).then(|| {
            self.url
                .replace("{app}", key.app())
                .replace("{stream}", key.stream())
        })
    }
}

/// The URL as logged: without its query (which may hold a token).
pub fn shown(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// What every push runs with.
#[derive(Clone)]
pub struct PushContext {
    /// The engine whose streams are pushed.
    pub engine: Engine,
    /// The host clock.
    pub clock: Clock,
    /// The gateway's shutdown.
    pub stop: ShutdownSignal,
    /// Limits and the driver's settings.
    pub cfg: ListenerConfig,
    /// Log lines.
    pub log: Log,
}

/// The pushes running, by key and URL: a stream published again (a
/// publisher back within the linger time) does not start a second push.
#[derive(Default)]
pub struct Running(Mutex<BTreeSet<(String, String)>>);

/// Starts a push of `key` to each of `urls` not already running.
pub fn start(ctx: &PushContext, running: &Arc<Running>, key: &StreamKey, urls: Vec<String>) {
    for url in urls {
        let id = (key.to_string(), url.clone());
        if !running
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
        {
            continue;
        }
        let (ctx, running, key) = (ctx.clone(), running.clone(), key.clone());
        tokio::spawn(async move {
            run_push(&ctx, &key, &url).await;
            running
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
}

/// Pushes `key` to `url` until the local stream ends or the gateway
/// stops, calling again with backoff whenever the push ends.
async fn run_push(ctx: &PushContext, key: &StreamKey, url: &str) {
    let log = &ctx.log;
    let Some(target) = ClientTarget::parse(url) else {
        return;
    };
    let addr = format!("{}:{}", target.host, target.port);
    let mut backoff = Duration::from_secs(1);
    let mut n = 0u64;
    loop {
        if ctx.stop.is_triggered() {
            return;
        }
        if ctx.engine.stream(key).is_none() {
            log(format!("push of {key} to {}: the stream ended", shown(url)));
            return;
        }
        n += 1;
        let connected = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr)) => r,
            _ = ctx.stop.clone().wait() => return,
        };
        let mut streamed = false;
        let why = match connected {
            Ok(Ok(sock)) => {
                if n == 1 || backoff > Duration::from_secs(1) {
                    log(format!("pushing {key} to {}", shown(url)));
                }
                let r = relay::run(
                    relay::Call {
                        sock,
                        mode: ClientMode::Publish,
                        target: target.target.clone(),
                        key: key.clone(),
                        action: Action::Play,
                        protocol: PROTOCOL,
                        shown: shown(url).to_string(),
                    },
                    &ctx.engine,
                    ctx.clock,
                    ctx.stop.clone(),
                    &ctx.cfg,
                    log,
                )
                .await;
                streamed = r.streamed;
                r.why()
            }
            Ok(Err(e)) => format!("cannot reach {addr}: {e}"),
            Err(_) => format!("no answer from {addr} in 5 s"),
        };
        if ctx.stop.is_triggered() {
            return;
        }
        if ctx.engine.stream(key).is_none() {
            log(format!("push of {key} to {}: the stream ended", shown(url)));
            return;
        }
        if streamed {
            backoff = Duration::from_secs(1);
        }
        log(format!(
            "push of {key} to {} ended: {why}; calling again in {} s",
            shown(url),
            backoff.as_secs()
        ));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = ctx.stop.clone().wait() => return,
        }
        if !streamed {
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_take_their_keys_and_name_the_target() {
        let r = PushRule::parse("live/*=rtmp://backup:1936/copy/{stream}?token=t").unwrap();
        let key = StreamKey::new("live", "cam").unwrap();
        assert_eq!(
            r.target(&key).as_deref(),
            Some("rtmp://backup:1936/copy/cam?token=t")
        );
        assert_eq!(r.target(&StreamKey::new("other", "cam").unwrap()), None);
        let one = PushRule::parse("live/cam=rtmp://h/{app}/main").unwrap();
        assert_eq!(one.target(&key).as_deref(), Some("rtmp://h/live/main"));
        for bad in [
            "live/*",
            "=rtmp://h/a/b",
            "live/*=rtmp://h/a/b",
            "live/cam=http://h/a/b",
            "live/cam=rtmp://h/onlyapp",
        ] {
            assert!(PushRule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(shown("rtmp://h/a/b?token=secret"), "rtmp://h/a/b");
    }
}
