//! `GET /api/streams` (JSON) and `GET /metrics` (Prometheus text format),
//! rendered from the engine's stream table.

use arcly_core::engine::Engine;
use arcly_core::time::Instant;
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
/// publisher, players, uptime.
pub fn streams_json(engine: &Engine, now: Instant) -> String {
    let mut out = String::from("{\"streams\":[");
    for (i, s) in engine.streams().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let started = s.stats.started_at.load(Ordering::Relaxed);
        let uptime = now.as_micros().saturating_sub(started) / 1_000_000;
        let _ = write!(
            out,
            "{{\"app\":{},\"stream\":{},\"protocol\":{},\"publisher\":{},\"session\":{},\"subscribers\":{},\"uptime_secs\":{},\"bitrate_bps\":{},\"fps\":{:.2},\"frames\":{},\"bytes\":{},\"tracks\":[",
            json_str(s.key.app()),
            json_str(s.key.stream()),
            json_str(&s.protocol),
            s.peer.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
            s.session.0,
            s.subscribers,
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
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

/// Prometheus text exposition of the per-stream counters.
pub fn metrics(engine: &Engine) -> String {
    let streams = engine.streams();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP arcly_streams Streams being published.");
    let _ = writeln!(out, "# TYPE arcly_streams gauge");
    let _ = writeln!(out, "arcly_streams {}", streams.len());
    let series: [(&str, &str, &str); 5] = [
        (
            "arcly_stream_subscribers",
            "gauge",
            "Players attached to the stream.",
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
    out
}
