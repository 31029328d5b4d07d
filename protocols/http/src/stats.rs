//! `GET /api/streams` (JSON) and `GET /metrics` (Prometheus text format),
//! rendered from the engine's stream table.

use arcly_core::engine::{Engine, LinkReport, StreamKey};
use arcly_core::time::Instant;
use arcly_core::transcode::TranscodeReport;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Escapes a string for a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Every stream: tracks, codecs, resolution, bit rate, frame rate,
/// publisher, players, uptime, and the link figures of its connections
/// that have them (`links`: SRT's round trip, loss, retransmissions,
/// drops, rates).
pub fn streams_json(
    engine: &Engine,
    links: &[LinkReport],
    transcodes: &[TranscodeReport],
    now: Instant,
    hls_viewers: &dyn Fn(&StreamKey) -> usize,
) -> String {
    let mut out = String::from("{\"streams\":[");
    for (i, s) in engine.streams().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let started = s.stats.started_at.load(Ordering::Relaxed);
        let uptime = now.as_micros().saturating_sub(started) / 1_000_000;
        let _ = write!(
            out,
            "{{\"app\":{},\"stream\":{},\"protocol\":{},\"publisher\":{},\"session\":{},\"subscribers\":{},\"hls_viewers\":{},\"uptime_secs\":{},\"bitrate_bps\":{},\"fps\":{:.2},\"frames\":{},\"bytes\":{},\"tracks\":[",
            json_str(s.key.app()),
            json_str(s.key.stream()),
            json_str(&s.protocol),
            s.peer.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
            s.session.0,
            s.subscribers,
            hls_viewers(&s.key),
            uptime,
            s.stats.bitrate(),
            s.stats.fps(),
            s.stats.frames.load(Ordering::Relaxed),
            s.stats.bytes.load(Ordering::Relaxed),
        );
        for (j, t) in s.tracks.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"id\":{},\"codec\":{},\"codec_string\":{},\"width\":{},\"height\":{},\"sample_rate\":{},\"channels\":{}}}",
                t.id.0,
                json_str(t.codec.name()),
                json_str(&t.params.codec_string),
                t.params.width,
                t.params.height,
                t.params.sample_rate,
                t.params.channels
            );
        }
        out.push_str("],\"links\":[");
        let key = s.key.to_string();
        for (j, l) in links.iter().filter(|l| l.resource == key).enumerate() {
            if j > 0 {
                out.push(',');
            }
            link_json(&mut out, l);
        }
        out.push_str("],\"transcodes\":[");
        for (j, t) in transcodes.iter().filter(|t| t.resource == key).enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"command\":{},\"pid\":{},\"speed\":{:.3},\"frames_in\":{},\"frames_out\":{},\"dropped\":{},\"restarts\":{},\"renditions\":[{}]}}",
                json_str(&t.command),
                t.pid.map_or_else(|| "null".to_string(), |p| p.to_string()),
                t.speed,
                t.frames_in,
                t.frames_out,
                t.dropped,
                t.restarts,
                t.renditions
                    .iter()
                    .map(|r| json_str(r))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

/// One link's figures as a JSON object.
fn link_json(out: &mut String, l: &LinkReport) {
    let f = &l.figures;
    let _ = write!(
        out,
        "{{\"protocol\":{},\"id\":{},\"role\":{},\"peer\":{},\"rtt_ms\":{:.3},\"rtt_var_ms\":{:.3},\"packets_sent\":{},\"packets_retransmitted\":{},\"packets_reported_lost\":{},\"packets_send_dropped\":{},\"packets_received\":{},\"packets_lost\":{},\"packets_recovered\":{},\"packets_dropped\":{},\"packets_undecryptable\":{},\"bytes_sent\":{},\"bytes_received\":{},\"send_rate_bps\":{},\"receive_rate_bps\":{},\"capacity_pps\":{},\"transport\":{},\"notes\":[{}]}}",
        json_str(l.protocol),
        l.id,
        json_str(role(l)),
        json_str(&l.peer),
        f.rtt_us as f64 / 1000.0,
        f.rtt_var_us as f64 / 1000.0,
        f.pkt_sent,
        f.pkt_retrans,
        f.pkt_send_loss,
        f.pkt_send_drop,
        f.pkt_recv,
        f.pkt_recv_loss,
        f.pkt_recv_retrans,
        f.pkt_recv_drop,
        f.pkt_recv_undecrypted,
        f.bytes_sent,
        f.bytes_recv,
        f.send_rate * 8,
        f.recv_rate * 8,
        f.capacity,
        json_str(l.transport),
        l.notes
            .iter()
            .map(|n| json_str(n))
            .collect::<Vec<_>>()
            .join(","),
    );
}

fn role(l: &LinkReport) -> &'static str {
    if l.publishing {
        "publish"
    } else {
        "play"
    }
}

/// The link series of `/metrics`: name, kind, help, value.
type LinkSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LinkReport) -> f64,
);

const LINK_SERIES: [LinkSeries; 9] = [
    (
        "arcly_link_rtt_seconds",
        "gauge",
        "Smoothed round-trip time of the connection.",
        |l| l.figures.rtt_us as f64 / 1e6,
    ),
    (
        "arcly_link_packets_sent_total",
        "counter",
        "Data packets sent (first transmissions).",
        |l| l.figures.pkt_sent as f64,
    ),
    (
        "arcly_link_packets_retransmitted_total",
        "counter",
        "Data packets sent again.",
        |l| l.figures.pkt_retrans as f64,
    ),
    (
        "arcly_link_packets_send_dropped_total",
        "counter",
        "Packets the sender gave up before they were acknowledged.",
        |l| l.figures.pkt_send_drop as f64,
    ),
    (
        "arcly_link_packets_received_total",
        "counter",
        "Data packets received (unique).",
        |l| l.figures.pkt_recv as f64,
    ),
    (
        "arcly_link_packets_lost_total",
        "counter",
        "Packets found missing at the receiver.",
        |l| l.figures.pkt_recv_loss as f64,
    ),
    (
        "arcly_link_packets_recovered_total",
        "counter",
        "Retransmissions received.",
        |l| l.figures.pkt_recv_retrans as f64,
    ),
    (
        "arcly_link_packets_dropped_total",
        "counter",
        "Packets given up at the receiver: too late, never delivered.",
        |l| l.figures.pkt_recv_drop as f64,
    ),
    (
        "arcly_link_packets_undecryptable_total",
        "counter",
        "Packets that could not be decrypted.",
        |l| l.figures.pkt_recv_undecrypted as f64,
    ),
];

/// Prometheus text exposition of the per-stream counters and of each
/// link's figures.
pub fn metrics(
    engine: &Engine,
    links: &[LinkReport],
    hls_viewers: &dyn Fn(&StreamKey) -> usize,
) -> String {
    let streams = engine.streams();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP arcly_streams Streams being published.");
    let _ = writeln!(out, "# TYPE arcly_streams gauge");
    let _ = writeln!(out, "arcly_streams {}", streams.len());
    let series: [(&str, &str, &str); 6] = [
        (
            "arcly_stream_subscribers",
            "gauge",
            "Players attached to the stream.",
        ),
        (
            "arcly_stream_hls_viewers",
            "gauge",
            "Distinct HLS clients that asked for a playlist in the last 10 s.",
        ),
        ("arcly_stream_frames_total", "counter", "Frames published."),
        (
            "arcly_stream_bytes_total",
            "counter",
            "Payload bytes published.",
        ),
        (
            "arcly_stream_bitrate_bps",
            "gauge",
            "Payload bit rate over the last second.",
        ),
        (
            "arcly_stream_fps",
            "gauge",
            "Video frames per second over the last second.",
        ),
    ];
    for (name, kind, help) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in &streams {
            let value = match name {
                "arcly_stream_subscribers" => s.subscribers.to_string(),
                "arcly_stream_hls_viewers" => hls_viewers(&s.key).to_string(),
                "arcly_stream_frames_total" => s.stats.frames.load(Ordering::Relaxed).to_string(),
                "arcly_stream_bytes_total" => s.stats.bytes.load(Ordering::Relaxed).to_string(),
                "arcly_stream_bitrate_bps" => s.stats.bitrate().to_string(),
                _ => format!("{:.3}", s.stats.fps()),
            };
            let _ = writeln!(
                out,
                "{name}{{app={},stream={}}} {value}",
                json_str(s.key.app()),
                json_str(s.key.stream())
            );
        }
    }
    for (name, kind, help, value) in LINK_SERIES {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in links {
            let (app, stream) = l.resource.split_once('/').unwrap_or(("", &l.resource));
            let _ = writeln!(
                out,
                "{name}{{protocol={},app={},stream={},role={},id=\"{}\",peer={}}} {}",
                json_str(l.protocol),
                json_str(app),
                json_str(stream),
                json_str(role(l)),
                l.id,
                json_str(&l.peer),
                value(l)
            );
        }
    }
    out
}
