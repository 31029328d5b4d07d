//! Embedding the kernel on smol: publish a stream from one task and play it
//! from another, through the engine (auth, GOP cache and all).
//!
//! `cargo run -p arcly-smol --example embed_smol`

use arcly_core::engine::{Engine, Request, StreamKey};
use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
use arcly_core::time::{MediaTime, Timescale};
use arcly_core::Delivery;
use arcly_smol::MediaSink;
use arcly_smol::{Clock, SubscriptionStream};
use bytes::Bytes;
use futures::StreamExt;

fn main() {
    smol::block_on(run());
}

async fn run() {
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
    let mut sink = arcly_smol::PublishSink::new(publisher, clock);

    let player = engine
        .play(&Request::new(key, "example"))
        .expect("the stream exists");
    let viewer = smol::spawn(async move {
        let mut stream = SubscriptionStream::new(player.subscription);
        let mut frames = 0;
        while let Some(d) = stream.next().await {
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
        sink.send_frame(f).await.expect("the stream is open");
        smol::future::yield_now().await;
    }
    sink.flush().await.expect("flush"); // ends the stream: the viewer's stream finishes.
    let frames = viewer.await;
    println!("played {frames} frames");
    assert_eq!(frames, 90);
}
