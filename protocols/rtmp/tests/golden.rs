//! What the server sends a player, byte for byte.
//!
//! Each case replays a real player's bytes (ffmpeg 5.1's and ffmpeg 9's
//! `play`, `testdata/ffmpeg{5,9}_play.c2s`) into a server session, then
//! delivers a real publisher's stream (the tracks and every frame from the
//! first key frame, as the bus hands them to a late joiner) and compares
//! everything the session wrote with a file in `testdata/golden/`. Any
//! change to the RTMP egress (chunking, headers, metadata, timestamps) that
//! changes a byte a player receives fails here; a change meant to keep the
//! bytes (sharing the chunked form between players, vectored writes) is
//! proven by this test passing unchanged.
//!
//! `ARCLY_BLESS=1 cargo test -p arcly-rtmp --test golden` writes the files
//! again, for a change that is meant to alter the bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::session::{Input, Session, SessionEvent};
use arcly_core::time::Instant;
use arcly_rtmp::{RtmpConfig, ServerSession};
use bytes::BytesMut;
use std::borrow::Borrow;
use std::path::PathBuf;
use std::sync::Arc;

const FFMPEG5_PLAY: &[u8] = include_bytes!("../testdata/ffmpeg5_play.c2s");
const FFMPEG9_PLAY: &[u8] = include_bytes!("../testdata/ffmpeg9_play.c2s");

/// The tracks (the last set) and frames a publish capture carries.
fn published(capture: &[u8]) -> (Arc<TrackSet>, Vec<MediaFrame>) {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let mut tracks = None;
    let mut frames = Vec::new();
    let now = Instant::from_millis(1);
    for piece in capture.chunks(4096) {
        s.handle_input(now, Input::Stream(BytesMut::from(piece)));
        loop {
            let mut progress = false;
            while s.poll_transmit().is_some() {
                progress = true;
            }
            while let Some(e) = s.poll_event() {
                progress = true;
                match e {
                    SessionEvent::Request(r) => s.accept(now, r.id),
                    SessionEvent::Tracks(t) => {
                        tracks = Some(Borrow::<TrackSet>::borrow(&t).clone());
                    }
                    SessionEvent::Frame(f) => frames.push(f),
                    _ => {}
                }
            }
            if !progress {
                break;
            }
        }
    }
    (Arc::new(tracks.expect("the capture has tracks")), frames)
}

/// Everything a server session sends `player` while it plays `publish`.
fn sent_to_player(player: &[u8], publish: &[u8]) -> Vec<u8> {
    let (tracks, frames) = published(publish);
    pieces_to_player(player, &tracks, &frames).concat()
}

/// The transmits a server session makes for `player` while it plays
/// `tracks` and `frames` (from the first key frame).
fn pieces_to_player(
    player: &[u8],
    tracks: &Arc<TrackSet>,
    frames: &[MediaFrame],
) -> Vec<bytes::Bytes> {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let mut out = Vec::new();
    let mut now = 0u64;
    let mut fed = 0;
    // Byte by byte until the play request; the player's goodbye comes after
    // the stream.
    let mut accepted = false;
    while fed < player.len() && !accepted {
        now += 1;
        let t = Instant::from_millis(now);
        s.handle_input(t, Input::Stream(BytesMut::from(&player[fed..fed + 1])));
        fed += 1;
        while let Some(x) = s.poll_transmit() {
            out.push(x.data);
        }
        while let Some(e) = s.poll_event() {
            if let SessionEvent::Request(r) = e {
                s.accept(t, r.id);
                accepted = true;
            }
        }
    }
    assert!(accepted, "the capture plays");
    let t = Instant::from_millis(now);
    s.handle_delivery(t, DeliveryRef::Tracks(tracks));
    let start = frames.iter().position(MediaFrame::is_key).unwrap();
    for f in &frames[start..] {
        s.handle_delivery(t, DeliveryRef::Frame(f));
        while let Some(x) = s.poll_transmit() {
            out.push(x.data);
        }
    }
    s.handle_stream_end(t, RecvError::Closed(CloseReason::PublisherEnded));
    s.handle_input(t, Input::Stream(BytesMut::from(&player[fed..])));
    s.handle_input(t, Input::Eof);
    while let Some(x) = s.poll_transmit() {
        out.push(x.data);
    }
    out
}

fn check(name: &str, player: &[u8], publish: &[u8]) {
    let got = sent_to_player(player, publish);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(format!("{name}.s2c"));
    if std::env::var_os("ARCLY_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if got != want {
        let at = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        let dump = std::env::temp_dir().join(format!("{name}.s2c"));
        std::fs::write(&dump, &got).unwrap();
        panic!(
            "{name}: {} bytes sent, {} in the golden file; first difference at byte {at} \
             (what was sent is in {})",
            got.len(),
            want.len(),
            dump.display()
        );
    }
}

#[test]
fn ffmpeg5_player_of_ffmpeg5_h264_aac() {
    check(
        "ffmpeg5_play_h264_aac",
        FFMPEG5_PLAY,
        include_bytes!("../testdata/ffmpeg5_h264_aac_publish.c2s"),
    );
}

#[test]
fn ffmpeg9_player_of_gstreamer_h264_with_b_frames() {
    check(
        "ffmpeg9_play_gstreamer_h264_aac",
        FFMPEG9_PLAY,
        include_bytes!("../testdata/gstreamer_h264_aac_publish.c2s"),
    );
}

#[test]
fn ffmpeg9_player_of_enhanced_hevc() {
    check(
        "ffmpeg9_play_hevc_aac",
        FFMPEG9_PLAY,
        include_bytes!("../testdata/ffmpeg9_hevc_aac_publish.c2s"),
    );
}

#[test]
fn ffmpeg9_player_of_enhanced_av1_and_opus() {
    check(
        "ffmpeg9_play_av1_opus",
        FFMPEG9_PLAY,
        include_bytes!("../testdata/ffmpeg9_av1_opus_publish.c2s"),
    );
}

/// Players of the same frames share each big frame's body (the same buffer
/// goes to every socket: a one-chunk frame's own payload, a longer frame's
/// chunked body built once) and still get exactly the golden bytes, whether
/// they come first or later.
#[test]
fn later_players_share_the_chunked_bodies_and_get_the_same_bytes() {
    let (tracks, frames) = published(include_bytes!("../testdata/ffmpeg5_h264_aac_publish.c2s"));
    let first = pieces_to_player(FFMPEG5_PLAY, &tracks, &frames);
    let second = pieces_to_player(FFMPEG5_PLAY, &tracks, &frames);
    let golden = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/golden/ffmpeg5_play_h264_aac.s2c"),
    )
    .unwrap();
    assert_eq!(first.concat(), golden);
    assert_eq!(second.concat(), golden);
    let shared = second
        .iter()
        .filter(|b| b.len() >= 1024 && first.iter().any(|a| a.as_ptr() == b.as_ptr()))
        .count();
    let big = frames.iter().filter(|f| f.payload.len() >= 1024).count();
    assert!(
        shared > 0 && shared + 2 >= big,
        "{shared} bodies shared, {big} big frames"
    );
    // A frame that fits in one chunk goes out as its own payload, uncopied.
    let own = second
        .iter()
        .filter(|b| {
            frames
                .iter()
                .any(|f| f.payload.as_ptr() == b.as_ptr() && f.payload.len() == b.len())
        })
        .count();
    let one_chunk = frames
        .iter()
        .filter(|f| (1024..4000).contains(&f.payload.len()))
        .count();
    assert!(
        one_chunk > 0 && own >= one_chunk,
        "{own} payloads queued uncopied, {one_chunk} one-chunk frames"
    );
}

#[test]
fn the_golden_bytes_hold_a_whole_play() {
    // Not a tautology of the files: they must hold the handshake's S0, a
    // status, and media, or a broken recording would pass.
    let got = sent_to_player(
        FFMPEG5_PLAY,
        include_bytes!("../testdata/ffmpeg5_h264_aac_publish.c2s"),
    );
    assert_eq!(got[0], 3);
    let has = |s: &[u8]| got.windows(s.len()).any(|w| w == s);
    assert!(has(b"NetStream.Play.Start"));
    assert!(has(b"onMetaData"));
    assert!(has(b"NetStream.Play.UnpublishNotify"));
    assert!(got.len() > 300_000, "{} bytes", got.len());
}
