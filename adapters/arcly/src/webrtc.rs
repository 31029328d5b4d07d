//! WebRTC in the gateway: the UDP socket every peer shares, driven as an
//! endpoint, and the signalling the HTTP router hands WHIP offers to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use arcly_core::endpoint::EndpointHost;
use arcly_core::engine::Engine;
use arcly_core::session::ConnContext;
use arcly_tokio::{Clock, ShutdownSignal};
use arcly_webrtc::{WebRtcConfig, WebRtcSignalling};

/// The addresses peers are told to send to: the socket's own address when
/// it is bound to one; when bound to all, loopback and the address of the
/// interface the default route leaves by (found by connecting a UDP socket,
/// which sends nothing), unless `hosts` names them.
pub fn candidates(bound: SocketAddr, hosts: &[IpAddr]) -> Vec<SocketAddr> {
    let port = bound.port();
    if !hosts.is_empty() {
        return hosts.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    }
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut out = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)];
    let routed = UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| {
            s.connect(("192.0.2.1", 9))?;
            s.local_addr()
        })
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = routed {
        out.push(SocketAddr::new(ip, port));
    }
    out
}

/// What the WebRTC side is set up with: the UDP address, the addresses
/// peers are sent to (none: found), and the transcoder for AAC players.
pub struct Setup<'a> {
    /// The UDP address every peer shares.
    pub addr: SocketAddr,
    /// The addresses peers are sent to (`--webrtc-host`).
    pub hosts: &'a [IpAddr],
    /// AAC to Opus for players (`--webrtc-audio-transcode`).
    pub audio_transcoder: Option<arcly_core::transcode::TranscoderFactory>,
    /// Where its sessions are listed for `/api/sessions`.
    pub sessions: Option<std::sync::Arc<arcly_tokio::Sessions>>,
}

/// Binds the WebRTC socket; returns its address, the candidates given to
/// peers, the signalling for the HTTP router and the task that serves it.
pub async fn bind(
    setup: Setup<'_>,
    engine: Engine,
    clock: Clock,
    ctx: ConnContext,
    stop: ShutdownSignal,
    log: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<
    (
        SocketAddr,
        Vec<SocketAddr>,
        WebRtcSignalling,
        impl std::future::Future<Output = std::io::Result<()>>,
    ),
    String,
> {
    let Setup {
        addr,
        hosts,
        audio_transcoder,
        sessions,
    } = setup;
    let sock = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for WebRTC on {addr}/udp: {e}"))?;
    let local = sock.local_addr().unwrap_or(addr);
    let candidates = candidates(local, hosts);
    let (endpoint, signalling) = arcly_webrtc::webrtc(WebRtcConfig {
        candidates: candidates.clone(),
        audio_transcoder,
        ..WebRtcConfig::default()
    });
    let mut host = EndpointHost::new(endpoint, engine, ctx);
    if let Some(list) = sessions.clone() {
        host = host.with_ids(std::sync::Arc::new(move || list.next_id()));
    }
    let task = async move {
        let listed = sessions.map(|s| (s, "webrtc"));
        arcly_tokio::drive_endpoint_tracked(sock, host, clock, stop, &*log, listed).await
    };
    Ok((local, candidates, signalling, task))
}
