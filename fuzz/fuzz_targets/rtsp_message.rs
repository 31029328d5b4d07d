//! Arbitrary bytes into the RTSP message framing (requests, responses,
//! interleaved frames), the SDP reader, the RTCP reader and the
//! `Transport` / URL readers: no panic, and the framing never keeps more
//! than its bounds.

#![no_main]

use arcly_rtsp::message::{parse, Limits, Message};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(m)) = parse(&mut buf, &limits) {
        match m {
            Message::Request(r) => {
                assert!(r.body.len() <= limits.max_body);
                let _ = arcly_rtsp::url::path_parts(&r.uri);
                if let Some(t) = r.headers.get("Transport") {
                    let _ = arcly_rtsp::url::parse_transport(t);
                }
                if let Some(a) = r.headers.get("Authorization") {
                    let _ = arcly_rtsp::auth::basic_credentials(a);
                }
                let _ = arcly_rtsp::sdp::parse(&r.body);
            }
            Message::Response(r) => {
                if let Some(a) = r.headers.get("WWW-Authenticate") {
                    if let Some(c) = arcly_rtsp::auth::DigestChallenge::parse(a) {
                        let _ = c.answer("u", "p", "DESCRIBE", "rtsp://h/x", 1, "c");
                    }
                }
                let _ = arcly_rtsp::sdp::parse(&r.body);
            }
            Message::Data { data, .. } => {
                let _ = arcly_rtsp::rtcp::sender_reports(&data).count();
                let _ = arcly_rtsp::rtcp::has_bye(&data);
            }
        }
    }
    let _ = arcly_rtsp::sdp::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = arcly_rtsp::url::RtspUrl::parse(s);
    }
});
