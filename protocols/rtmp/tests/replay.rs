//! Replays byte captures of real clients (what ffmpeg sent to nginx-rtmp,
//! recorded by `testdata/record_proxy.py`; see `testdata/capture.sh`)
//! through the server session, answering `accept` to every request.

use arcly_core::frame::{CodecId, FrameKind, MediaFrame, TrackSet};
use arcly_core::session::{Input, Session, SessionEnd, SessionEvent, StreamRequest};
use arcly_core::time::Instant;
use arcly_rtmp::{RtmpConfig, ServerSession};
use bytes::BytesMut;

const FFMPEG5_H264_AAC: &[u8] = include_bytes!("../testdata/ffmpeg5_h264_aac_publish.c2s");
const FFMPEG9_HEVC_AAC: &[u8] = include_bytes!("../testdata/ffmpeg9_hevc_aac_publish.c2s");
const FFMPEG9_AV1_OPUS: &[u8] = include_bytes!("../testdata/ffmpeg9_av1_opus_publish.c2s");
const FFMPEG5_PLAY: &[u8] = include_bytes!("../testdata/ffmpeg5_play.c2s");

#[derive(Debug, Default)]
struct Summary {
    requests: Vec<StreamRequest>,
    tracks: Vec<TrackSet>,
    frames: Vec<MediaFrame>,
    metadata: Vec<Vec<(String, String)>>,
    publish_stopped: usize,
    play_stopped: usize,
    closed: Option<SessionEnd>,
    sent: usize,
}

impl Summary {
    fn count(&self, codec: CodecId) -> usize {
        self.frames.iter().filter(|f| f.codec == codec).count()
    }
    fn keys(&self) -> usize {
        self.frames.iter().filter(|f| f.kind == FrameKind::Key).count()
    }
}

fn replay(bytes: &[u8], split: usize) -> Summary {
    let mut s = ServerSession::new(RtmpConfig::default(), Instant::ZERO);
    let mut sum = Summary::default();
    let mut now = 0;
    for piece in bytes.chunks(split) {
        now += 1;
        s.handle_input(Instant::from_millis(now), Input::Stream(BytesMut::from(piece)));
        drain(&mut s, &mut sum, now);
    }
    s.handle_input(Instant::from_millis(now + 1), Input::Eof);
    drain(&mut s, &mut sum, now);
    sum
}

fn drain(s: &mut ServerSession, sum: &mut Summary, now: u64) {
    loop {
        let mut progress = false;
        while let Some(t) = s.poll_transmit() {
            sum.sent += t.data.len();
            progress = true;
        }
        while let Some(e) = s.poll_event() {
            progress = true;
            match e {
                SessionEvent::Request(r) => {
                    let id = r.id;
                    sum.requests.push(r);
                    s.accept(Instant::from_millis(now), id);
                }
                SessionEvent::Tracks(t) => sum.tracks.push(t),
                SessionEvent::Frame(f) => sum.frames.push(f),
                SessionEvent::Metadata(m) => sum.metadata.push(m),
                SessionEvent::PublishStopped => sum.publish_stopped += 1,
                SessionEvent::PlayStopped => sum.play_stopped += 1,
                SessionEvent::Closed(c) => sum.closed = Some(c),
                _ => {}
            }
        }
        if !progress {
            break;
        }
    }
}

fn print(name: &str, s: &Summary) {
    eprintln!(
        "{name}: requests {:?}, tracks {:?}, frames {} (keys {}), metadata {}, closed {:?}",
        s.requests,
        s.tracks.last().map(|t| t.iter().map(|t| (t.codec, t.config.len(), t.params.clone())).collect::<Vec<_>>()),
        s.frames.len(),
        s.keys(),
        s.metadata.len(),
        s.closed
    );
}

#[test]
fn summaries() {
    for (name, b) in [
        ("ffmpeg5 h264/aac", FFMPEG5_H264_AAC),
        ("ffmpeg9 hevc/aac", FFMPEG9_HEVC_AAC),
        ("ffmpeg9 av1/opus", FFMPEG9_AV1_OPUS),
        ("ffmpeg5 play", FFMPEG5_PLAY),
    ] {
        let s = replay(b, b.len());
        print(name, &s);
        for c in [CodecId::H264, CodecId::H265, CodecId::Av1, CodecId::Aac, CodecId::Opus] {
            eprintln!("  {c:?}: {}", s.count(c));
        }
        if let Some(f) = s.frames.first() { eprintln!("  first {:?} {:?} {:?} {}", f.codec, f.dts, f.pts, f.payload.len()); }
        if let Some(f) = s.frames.last() { eprintln!("  last {:?} {:?} {:?}", f.codec, f.dts, f.pts); }
        eprintln!("  disc {}", s.frames.iter().filter(|f| f.discontinuity).count());
        eprintln!("  meta {:?}", s.metadata.first());
    }
}
