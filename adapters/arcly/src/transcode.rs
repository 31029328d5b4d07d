//! AAC to Opus for WebRTC players, by an ffmpeg process per player: the
//! AAC frames go to its stdin as MPEG-TS through the kernel's muxer, the
//! Opus comes back on its stdout as MPEG-TS through the kernel's demuxer,
//! times kept (`-copyts`). Two threads carry the pipes; the player polls
//! what came back, so it never waits on ffmpeg. Past a bounded queue input
//! is dropped and counted; the process is killed with the player.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use arcly_core::frame::{CodecId, MediaFrame, TrackInfo, TrackSet};
use arcly_core::media::codec::opus::OpusHead;
use arcly_core::media::ts::demux::{TsDemuxer, TsDemuxerConfig, TsEvent};
use arcly_core::media::ts::mux::{TsMuxer, TsMuxerConfig};
use arcly_core::time::Timescale;
use arcly_core::transcode::{AudioTranscoder, TranscodeError, TranscoderFactory};
use bytes::BytesMut;

/// Chunks of MPEG-TS waiting for ffmpeg's stdin, and Opus frames waiting
/// for the player (about 2 s of 20 ms frames each).
const QUEUE: usize = 100;

/// ffmpeg's output as the kernel's demuxer reads it back: MPEG-TS on
/// stdout, times as they came (no mux delay), each packet written at once.
pub const TS_TO_STDOUT: [&str; 9] = [
    "-f",
    "mpegts",
    "-muxdelay",
    "0",
    "-muxpreload",
    "0",
    "-flush_packets",
    "1",
    "pipe:1",
];

/// Reads a child's pipe until it ends, handing each read to `take`, which
/// says whether to go on.
pub fn read_pipe(mut pipe: impl Read, mut take: impl FnMut(&[u8]) -> bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !take(&buf[..n]) {
                    return;
                }
            }
        }
    }
}

/// The factory for `--webrtc-audio-transcode ffmpeg[=PATH]`: AAC to Opus.
pub fn ffmpeg_factory(ffmpeg: String) -> TranscoderFactory {
    TranscoderFactory(Arc::new(move |from, to| {
        (from == CodecId::Aac && to == CodecId::Opus).then(|| {
            Box::new(FfmpegAacToOpus {
                ffmpeg: ffmpeg.clone(),
                job: None,
            }) as Box<dyn AudioTranscoder>
        })
    }))
}

/// One player's AAC-to-Opus ffmpeg.
struct FfmpegAacToOpus {
    ffmpeg: String,
    job: Option<Job>,
}

struct Job {
    child: Child,
    muxer: TsMuxer,
    input: TrackInfo,
    to_ffmpeg: SyncSender<BytesMut>,
    from_ffmpeg: Receiver<MediaFrame>,
    dropped: u64,
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AudioTranscoder for FfmpegAacToOpus {
    fn start(&mut self, input: &TrackInfo) -> Result<TrackInfo, TranscodeError> {
        let mut set = TrackSet::new();
        set.upsert(input.clone())
            .map_err(|e| TranscodeError(e.to_string()))?;
        let muxer = TsMuxer::new(&set, TsMuxerConfig::default())
            .map_err(|e| TranscodeError(e.to_string()))?;
        let mut child = Command::new(&self.ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args([
                "-fflags",
                "nobuffer",
                "-probesize",
                "32",
                "-analyzeduration",
                "0",
            ])
            .args(["-f", "mpegts", "-i", "pipe:0", "-map", "0:a:0", "-copyts"])
            .args(["-c:a", "libopus", "-b:a", "64k", "-ar", "48000", "-ac", "2"])
            .args(["-frame_duration", "20", "-application", "lowdelay"])
            .args(TS_TO_STDOUT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TranscodeError(format!("cannot run {}: {e}", self.ffmpeg)))?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(TranscodeError("ffmpeg's pipes are missing".into()));
        };
        let (to_ffmpeg, queued) = sync_channel::<BytesMut>(QUEUE);
        std::thread::spawn(move || {
            for chunk in queued {
                if stdin.write_all(&chunk).and_then(|_| stdin.flush()).is_err() {
                    return;
                }
            }
        });
        let (done, from_ffmpeg) = sync_channel::<MediaFrame>(QUEUE);
        let track = input.id;
        std::thread::spawn(move || {
            let mut demux = TsDemuxer::new(TsDemuxerConfig::default());
            read_pipe(stdout, |bytes| {
                demux.push(bytes);
                while let Some(ev) = demux.poll_event() {
                    if let TsEvent::Frame(mut f) = ev {
                        if f.codec != CodecId::Opus {
                            continue;
                        }
                        f.track = track;
                        if let Err(TrySendError::Disconnected(_)) = done.try_send(f) {
                            return false;
                        }
                    }
                }
                true
            });
        });
        let output = TrackInfo::new(
            input.id,
            CodecId::Opus,
            Timescale::new(48_000).ok_or_else(|| TranscodeError("timescale".into()))?,
            OpusHead::new(2, 312, 48_000).to_bytes(),
        );
        self.job = Some(Job {
            child,
            muxer,
            input: input.clone(),
            to_ffmpeg,
            from_ffmpeg,
            dropped: 0,
        });
        Ok(output)
    }

    fn push(&mut self, frame: &MediaFrame) -> Result<(), TranscodeError> {
        let job = self
            .job
            .as_mut()
            .ok_or_else(|| TranscodeError("not started".into()))?;
        if frame.track != job.input.id {
            return Ok(());
        }
        let mut out = BytesMut::new();
        job.muxer
            .write_frame(frame, &mut out)
            .map_err(|e| TranscodeError(e.to_string()))?;
        match job.to_ffmpeg.try_send(out) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                job.dropped += 1;
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => {
                let status = job.child.try_wait().ok().flatten();
                Err(TranscodeError(match status {
                    Some(s) => format!("ffmpeg exited ({s})"),
                    None => "ffmpeg stopped taking input".into(),
                }))
            }
        }
    }

    fn poll(&mut self) -> Option<MediaFrame> {
        self.job.as_mut()?.from_ffmpeg.try_recv().ok()
    }
}
