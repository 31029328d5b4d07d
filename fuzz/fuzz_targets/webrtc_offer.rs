//! Arbitrary text as a WHIP offer into the signalling (our origin rewrite,
//! str0m's SDP parser, the answer and its codec check): an answer or a
//! refusal, never a panic.

#![no_main]

use arcly_core::engine::Action;
use arcly_core::signal::{Offer, Signalling};
use arcly_core::time::Instant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_ep, sig) = arcly_webrtc::webrtc(arcly_webrtc::WebRtcConfig {
        candidates: vec!["127.0.0.1:8189".parse().unwrap()],
        ..Default::default()
    });
    let _ = sig.offer(
        Instant::ZERO,
        Offer {
            action: Action::Publish,
            app: "live".into(),
            stream: "x".into(),
            token: None,
            user: None,
            password: None,
            sdp: String::from_utf8_lossy(data).into_owned(),
        },
    );
});
