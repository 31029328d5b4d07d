//! Embedding the kernel with plain threads: publish from one thread, play
//! from another, no async runtime anywhere.
//!
//! `cargo run -p arcly-blocking --example embed_blocking`

use arcly_blocking::MediaSink;
use arcly_blocking::{recv_blocking, Clock};
use arcly_core::engine::{Engine, Request, StreamKey};
use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
use arcly_core::time::{MediaTime, Timescale};
use arcly_core::Delivery;
use bytes::Bytes;

fn main() {
    let engine = Engine::default();
    let clock = Clock::new();
    let key = StreamKey::new("live", "demo").expect("valid name");
    let mut publisher = engine
        .publish(&Request::new(key.clone(), "example"), clock.now())
        .expect("nobody else publishes live/demo");
    let mut tracks = TrackSet::new();
    tracks
        .upsert(TrackInfo::new(
            TrackId(0),
            CodecId::H264,
            Timescale::MILLIS,
            Bytes::from_static(&[1, 0x64, 0, 0x1f]),
        ))
        .expect("one track fits");
    publisher.set_tracks(tracks);
    // Frames go in through the adapter's MediaSink.
    let mut sink = arcly_blocking::PublishSink::new(publisher, clock);

    let mut player = engine
        .play(&Request::new(key, "example"))
        .expect("the stream exists");
    let viewer = std::thread::spawn(move || {
        let mut frames = 0;
        while let Ok(d) = recv_blocking(&mut player.subscription) {
            if let Delivery::Frame(f) = d {
                frames += 1;
                if f.is_key() {
                    println!("key frame at {} ms", f.pts.as_millis());
                }
            }
        }
        frames
    });

    for i in 0..90 {
        let f = MediaFrame::video(
            TrackId(0),
            CodecId::H264,
            i % 30 == 0,
            MediaTime::from_millis(i * 33),
            Bytes::from(vec![0u8; 1000]),
        );
        sink.send_frame(f).expect("the stream is open");
    }
    sink.flush().expect("flush"); // ends the stream: the viewer's loop finishes.
    let frames = viewer.join().expect("viewer thread");
    println!("played {frames} frames");
    assert_eq!(frames, 90);
}
