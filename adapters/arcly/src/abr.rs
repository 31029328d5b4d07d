//! Adaptive bitrate: a stream's ladder made by one ffmpeg process per
//! stream (`--abr 720p,480p,360p`). The source is one rung as it comes; the
//! others are streams of their own on the bus (`live/cam_480p`), packaged
//! for HLS like any stream and listed with the source in its multivariant
//! playlist (`/live/cam/index.m3u8`).
//!
//! The stream's frames go to ffmpeg's stdin as MPEG-TS through the kernel's
//! muxer; the renditions come back in one MPEG-TS on its stdout (one video
//! PID per rung and the source's audio, copied) through the kernel's
//! demuxer, times kept (`-copyts`), key frames where the source has them
//! (`-force_key_frames source`), so every rung's segments start at the same
//! instants. Nothing is parsed twice and nothing touches the disk.
//!
//! The publisher is never held back: the engine's tap hands frames to a
//! bounded queue, and past it frames are dropped up to the next key frame
//! ([`KeyFrameGate`]), counted. If ffmpeg dies it is started again (1 s,
//! doubling to 30 s); the renditions end and come back, and their playlists
//! carry a discontinuity. The process is killed with its stream.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant as WallInstant};

use arcly_core::bus::{CloseReason, Delivery, DeliveryRef, RecvError};
use arcly_core::engine::{Consumer, ConsumerFactory, Engine, Publisher, Request, StreamKey};
use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::ts::mux::{TsMuxer, TsMuxerConfig};
use arcly_core::time::Instant;
use arcly_core::transcode::{
    Fed, KeyFrameGate, RenditionSplitter, TranscodeError, TranscodeEvent, TranscodeReport,
    TranscodeSource, Transcoder,
};
use arcly_http::HlsOrigin;
use arcly_tokio::Clock;
use bytes::BytesMut;

/// The protocol name renditions are published under (the gateway's
/// authenticator lets it publish: the operator configured the ladder).
pub const PROTOCOL: &str = "transcode";

/// Frames queued for ffmpeg at most (about 8 s of 30 fps video and its
/// audio: ffmpeg takes a few seconds to start its encoders); past it
/// frames are dropped to the next key frame.
const QUEUE: usize = 600;

/// An ffmpeg whose queue is full and that gave nothing out for this long
/// is killed and started again.
const WEDGED: Duration = Duration::from_secs(10);

/// The first wait before ffmpeg is started again, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// One rung of a ladder: its name (the suffix of its stream's name), its
/// picture height, and its video bit rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rung {
    /// `"720p"`.
    pub name: String,
    /// Picture height in pixels (the width follows the source's aspect).
    pub height: u32,
    /// Video bit rate, kbit/s.
    pub kbps: u32,
}

/// The usual rungs' bit rates (H.264, 30 fps), kbit/s.
const PRESETS: [(u32, u32); 9] = [
    (2160, 14_000),
    (1440, 9_000),
    (1080, 5_000),
    (720, 2_800),
    (540, 2_000),
    (480, 1_400),
    (360, 800),
    (240, 400),
    (144, 200),
];

/// Reads a ladder: rungs by height (`1080p,720p,480p`), each with its bit
/// rate if not the usual one (`720p@2000k`); `copy` (or `source`) names the
/// source's own rung, which is always there. Highest first.
pub fn parse_ladder(s: &str) -> Result<Vec<Rung>, String> {
    let mut rungs: Vec<Rung> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if item == "copy" || item == "source" {
            continue;
        }
        let (name, rate) = match item.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (item, None),
        };
        let height: u32 = name
            .strip_suffix('p')
            .and_then(|h| h.parse().ok())
            .filter(|h| (32..=4320).contains(h) && h % 2 == 0)
            .ok_or_else(|| {
                format!("ladder rung '{item}': a height such as 720p is needed (32 to 4320, even)")
            })?;
        let kbps = match rate {
            Some(r) => r
                .strip_suffix('k')
                .unwrap_or(r)
                .parse()
                .ok()
                .filter(|k| (50..=100_000).contains(k))
                .ok_or_else(|| {
                    format!("ladder rung '{item}': a bit rate such as 2000k is needed (50k to 100000k)")
                })?,
            None => PRESETS
                .iter()
                .find(|(h, _)| *h == height)
                .map(|(_, k)| *k)
                .ok_or_else(|| {
                    format!("ladder rung '{item}': no usual bit rate for {height}p; give one, as {height}p@1000k")
                })?,
        };
        if rungs.iter().any(|r| r.height == height) {
            return Err(format!("ladder rung '{item}': {height}p is named twice"));
        }
        rungs.push(Rung {
            name: format!("{height}p"),
            height,
            kbps,
        });
    }
    if rungs.is_empty() {
        return Err("a ladder needs at least one rung besides the source (720p, ...)".into());
    }
    rungs.sort_by_key(|r| std::cmp::Reverse(r.height));
    Ok(rungs)
}

/// The stream a rung of `key` is published as (`live/cam_720p`).
pub fn rendition_key(key: &StreamKey, rung: &Rung) -> Option<StreamKey> {
    StreamKey::new(key.app(), &format!("{}_{}", key.stream(), rung.name)).ok()
}

/// ffmpeg's arguments for these rungs: MPEG-TS in on stdin, one video
/// stream per rung (scaled from the source, key frames where the source
/// has them) and the audio copied, MPEG-TS out on stdout.
pub fn ffmpeg_args(rungs: &[Rung], audio: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        // The stream's tracks are in its program map and first frames:
        // half a second of probing (not five) starts the rungs sooner.
        "-analyzeduration",
        "500000",
        "-f",
        "mpegts",
        "-i",
        "pipe:0",
        "-copyts",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let n = rungs.len();
    let mut graph = format!("[0:v:0]split={n}");
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in rungs.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale=-2:{}[v{i}]", r.height));
    }
    a.extend(["-filter_complex".into(), graph]);
    for (i, r) in rungs.iter().enumerate() {
        a.extend([
            "-map".into(),
            format!("[v{i}]"),
            format!("-b:v:{i}"),
            format!("{}k", r.kbps),
            format!("-maxrate:v:{i}"),
            format!("{}k", r.kbps + r.kbps / 10),
            format!("-bufsize:v:{i}"),
            format!("{}k", r.kbps * 2),
        ]);
    }
    for s in [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-bf",
        "0",
        "-sc_threshold",
        "0",
        "-g",
        "1000",
        "-force_key_frames",
        "source",
    ] {
        a.push(s.into());
    }
    if audio {
        for s in ["-map", "0:a:0", "-c:a", "copy"] {
            a.push(s.into());
        }
    }
    a.extend(crate::transcode::TS_TO_STDOUT.map(String::from));
    a
}

/// A path's own ladder, if it names one.
pub type LadderFor = Arc<dyn Fn(&StreamKey) -> Option<Vec<Rung>> + Send + Sync>;

/// The ladders of a gateway: which rungs, which ffmpeg, where renditions
/// go.
pub struct Abr {
    /// The rungs below the source, for streams whose path names none.
    pub rungs: Vec<Rung>,
    /// A path's own ladder, if it names one (an empty one: none).
    pub ladder_for: LadderFor,
    /// The renditions being published (they get no ladder of their own),
    /// and the sources whose ladders run, each by the ladder's id: a ladder
    /// that ends forgets only its own (a new one for the same source may
    /// have started already).
    pub owners: Mutex<HashMap<StreamKey, u64>>,
    /// The last ladder id given.
    pub ids: AtomicU64,
    /// The ffmpeg to run.
    pub ffmpeg: String,
    /// The engine renditions are published to (set once it is built).
    pub engine: Arc<OnceLock<Engine>>,
    /// The HLS origin whose multivariant playlists list the renditions.
    pub origin: Option<HlsOrigin>,
    /// The gateway's clock.
    pub clock: Clock,
    /// The running jobs, for the statistics.
    pub jobs: Arc<Jobs>,
    /// Where log lines go.
    pub log: Arc<dyn Fn(String) + Send + Sync>,
}

impl Abr {
    /// Whether `key` is a rendition of some stream (it gets no ladder of
    /// its own).
    fn is_rendition(&self, key: &StreamKey) -> bool {
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .is_some_and(|id| *id & RENDITION != 0)
    }

    /// Notes ladder `id`'s source and renditions (`on`), or forgets them
    /// where they are still its own; whether the source was its own.
    fn note(&self, id: u64, source: &StreamKey, renditions: &[StreamKey], on: bool) -> bool {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        let keys =
            std::iter::once((source, id)).chain(renditions.iter().map(|k| (k, id | RENDITION)));
        let mut own = false;
        for (k, v) in keys {
            if on {
                owners.insert(k.clone(), v);
            } else if owners.get(k) == Some(&v) {
                owners.remove(k);
                own |= k == source;
            }
        }
        own
    }

    /// The consumer factory that gives every stream (not a rendition) its
    /// ladder.
    pub fn consumer_factory(self: Arc<Self>) -> ConsumerFactory {
        Arc::new(move |key: &StreamKey, _now: Instant| {
            if self.is_rendition(key) {
                return None;
            }
            Some(Box::new(Renditions {
                id: self.ids.fetch_add(1, Ordering::Relaxed) + 1,
                abr: self.clone(),
                key: key.clone(),
                transcoder: None,
                keys: Vec::new(),
                outs: Vec::new(),
            }) as Box<dyn Consumer>)
        })
    }
}

/// The running jobs.
#[derive(Default)]
pub struct Jobs(Mutex<Vec<Weak<Shared>>>);

impl TranscodeSource for Jobs {
    fn transcodes(&self) -> Vec<TranscodeReport> {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        jobs.retain(|j| j.strong_count() > 0);
        jobs.iter()
            .filter_map(Weak::upgrade)
            .map(|j| j.report())
            .collect()
    }
}

/// A stream's ladder, as the consumer the engine's tap feeds: the stream
/// goes to a [`Transcoder`], and each rendition it gives out is published
/// as a stream of its own (and ended when the transcoder stops, to be
/// published again when it starts).
struct Renditions {
    /// This ladder's id (see [`Abr::owners`]).
    id: u64,
    abr: Arc<Abr>,
    key: StreamKey,
    transcoder: Option<Box<dyn Transcoder>>,
    /// Each rendition's stream.
    keys: Vec<StreamKey>,
    /// Each rendition's tracks and publisher.
    outs: Vec<Out>,
}

/// One rendition's last tracks, and its publisher while it publishes (a
/// refused or closed one is published again at its next key frame).
#[derive(Default)]
struct Out {
    tracks: Option<TrackSet>,
    publisher: Option<Publisher>,
}

/// Marks a rendition's entry in [`Abr::owners`] (a source's has no mark).
const RENDITION: u64 = 1 << 63;

impl Renditions {
    /// Starts the transcoder for these tracks: the rungs below the
    /// source's height (a stream with no video, or none smaller, gets
    /// none).
    fn start(&mut self, tracks: &TrackSet) {
        let Some(video) = tracks.video() else {
            return;
        };
        let height = video.params.height;
        let ladder = (self.abr.ladder_for)(&self.key).unwrap_or_else(|| self.abr.rungs.clone());
        if ladder.is_empty() {
            return;
        }
        let rungs: Vec<Rung> = ladder
            .iter()
            .filter(|r| height == 0 || r.height < height)
            .cloned()
            .collect();
        let keys: Vec<StreamKey> = rungs
            .iter()
            .filter_map(|r| rendition_key(&self.key, r))
            .collect();
        if rungs.is_empty() || keys.len() != rungs.len() {
            (self.abr.log)(format!(
                "{}: no ladder rung below its {height}p, no renditions",
                self.key
            ));
            return;
        }
        let job = FfmpegLadder::new(&self.abr, &self.key, rungs, tracks);
        {
            let mut jobs = self.abr.jobs.0.lock().unwrap_or_else(|p| p.into_inner());
            jobs.retain(|j| j.strong_count() > 0);
            jobs.push(Arc::downgrade(&job.shared));
        }
        self.abr.note(self.id, &self.key, &keys, true);
        if let Some(o) = &self.abr.origin {
            o.set_renditions(&self.key, keys.clone());
        }
        (self.abr.log)(format!(
            "{}: ladder {} by ffmpeg",
            self.key,
            job.shared.renditions.join(", ")
        ));
        self.outs = keys.iter().map(|_| Out::default()).collect();
        self.keys = keys;
        self.transcoder = Some(Box::new(job));
    }

    /// Publishes what the transcoder gave out.
    fn drain(&mut self, now: Instant) {
        let Some(t) = self.transcoder.as_mut() else {
            return;
        };
        while let Some(ev) = t.poll_event() {
            match ev {
                TranscodeEvent::Tracks { rendition, tracks } => {
                    let (Some(key), Some(out)) =
                        (self.keys.get(rendition), self.outs.get_mut(rendition))
                    else {
                        continue;
                    };
                    if out.publisher.is_none() {
                        out.publisher = publish(&self.abr, key, now);
                    }
                    if let Some(p) = out.publisher.as_mut() {
                        p.set_tracks((*tracks).clone());
                    }
                    out.tracks = Some(*tracks);
                }
                TranscodeEvent::Frame { rendition, frame } => {
                    let (Some(key), Some(out)) =
                        (self.keys.get(rendition), self.outs.get_mut(rendition))
                    else {
                        continue;
                    };
                    // Refused or closed (reaped while the source lingered,
                    // say): published again at a key frame.
                    if out.publisher.is_none() && frame.is_key() {
                        if let Some(tracks) = &out.tracks {
                            out.publisher = publish(&self.abr, key, now);
                            if let Some(p) = out.publisher.as_mut() {
                                p.set_tracks(tracks.clone());
                            }
                        }
                    }
                    if let Some(p) = out.publisher.as_mut() {
                        if p.publish(now, frame).is_err() {
                            out.publisher = None;
                        }
                    }
                }
                TranscodeEvent::Stopped { why } => {
                    (self.abr.log)(format!("{}: the ladder stopped: {why}", self.key));
                    for out in &mut self.outs {
                        out.tracks = None;
                        if let Some(p) = out.publisher.take() {
                            p.end(CloseReason::PublisherEnded);
                        }
                    }
                }
            }
        }
    }
}

/// Publishes a rendition's stream.
fn publish(abr: &Abr, key: &StreamKey, now: Instant) -> Option<Publisher> {
    let engine = abr.engine.get()?;
    let mut req = Request::new(key.clone(), PROTOCOL);
    req.unix_time = abr.clock.unix_base() + now.as_micros() / 1_000_000;
    match engine.publish(&req, now) {
        Ok(p) => Some(p),
        Err(e) => {
            (abr.log)(format!("{key}: the rendition cannot be published: {e}"));
            None
        }
    }
}

impl Consumer for Renditions {
    fn handle(&mut self, now: Instant, d: DeliveryRef<'_>) {
        if let DeliveryRef::Tracks(t) = d {
            if self.transcoder.is_none() {
                self.start(t);
            }
        }
        let Some(t) = self.transcoder.as_mut() else {
            return;
        };
        match d {
            DeliveryRef::Tracks(tracks) => {
                let _ = t.set_tracks(tracks);
            }
            DeliveryRef::Frame(f) => {
                let _ = t.push(f);
            }
            DeliveryRef::Lagged { .. } => {}
        }
        self.drain(now);
    }

    fn wants_key_frame(&mut self) -> bool {
        // A fresh or restarted transcoder starts at a key frame: ask.
        self.transcoder
            .as_mut()
            .is_some_and(|t| t.wants_key_frame())
    }

    fn end(&mut self, _now: Instant, _why: RecvError) {
        // Dropping the transcoder kills its process.
        if self.transcoder.take().is_some() && self.abr.note(self.id, &self.key, &self.keys, false)
        {
            if let Some(o) = &self.abr.origin {
                o.set_renditions(&self.key, Vec::new());
            }
        }
        for out in &mut self.outs {
            if let Some(p) = out.publisher.take() {
                p.end(CloseReason::PublisherEnded);
            }
        }
    }
}

/// What a job's transcoder, its feeder and its reader share.
pub struct Shared {
    resource: String,
    renditions: Vec<String>,
    command: String,
    child: Mutex<Option<Child>>,
    pid: AtomicU64,
    queued: AtomicUsize,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    dropped: AtomicU64,
    restarts: AtomicU64,
    /// Set when ffmpeg (re)started, taken by the key-frame request.
    want_key: AtomicBool,
    /// When the running ffmpeg started.
    spawned: Mutex<Option<WallInstant>>,
    /// The output's media time (µs) and the wall clock at its first frame
    /// since ffmpeg started, and at its last.
    speed: Mutex<Option<(i64, WallInstant, i64, WallInstant)>>,
}

impl Shared {
    fn report(&self) -> TranscodeReport {
        let speed = self
            .speed
            .lock()
            .ok()
            .and_then(|s| *s)
            .map_or(0.0, |(m0, w0, m1, w1)| {
                let wall = w1.duration_since(w0).as_secs_f64();
                if wall > 0.5 {
                    (m1 - m0) as f64 / 1e6 / wall
                } else {
                    0.0
                }
            });
        TranscodeReport {
            resource: self.resource.clone(),
            renditions: self.renditions.clone(),
            command: self.command.clone(),
            pid: match self.pid.load(Ordering::Relaxed) {
                0 => None,
                p => u32::try_from(p).ok(),
            },
            speed,
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// Kills an ffmpeg that takes input but has given nothing out for
    /// [`WEDGED`] (its queue is full): the feeder starts another.
    fn kill_if_wedged(&self) {
        let last = self
            .speed
            .lock()
            .ok()
            .and_then(|s| s.map(|(_, _, _, w)| w))
            .or_else(|| *self.spawned.lock().unwrap_or_else(|p| p.into_inner()));
        if last.is_some_and(|t| t.elapsed() >= WEDGED) {
            self.kill();
        }
    }

    fn kill(&self) {
        if let Some(c) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = c.kill();
        }
    }
}

/// The ffmpeg-process [`Transcoder`]: a feeder thread runs ffmpeg (again
/// when it dies) and writes the stream to it; a reader thread reads its
/// renditions back.
struct FfmpegLadder {
    names: Vec<String>,
    abr: Arc<Abr>,
    rungs: Vec<Rung>,
    /// To the feeder, once the first tracks came.
    tx: Option<Sender<Delivery>>,
    gate: KeyFrameGate,
    events: Option<Receiver<TranscodeEvent>>,
    shared: Arc<Shared>,
}

impl FfmpegLadder {
    fn new(abr: &Arc<Abr>, key: &StreamKey, rungs: Vec<Rung>, tracks: &TrackSet) -> Self {
        let args = ffmpeg_args(&rungs, tracks.iter().any(|t| !t.codec.is_video()));
        let shared = Arc::new(Shared {
            resource: key.to_string(),
            renditions: rungs
                .iter()
                .filter_map(|r| rendition_key(key, r))
                .map(|k| k.to_string())
                .collect(),
            command: std::iter::once(abr.ffmpeg.clone())
                .chain(args.iter().map(|a| {
                    if a.contains([' ', ';', '[']) {
                        format!("'{a}'")
                    } else {
                        a.clone()
                    }
                }))
                .collect::<Vec<_>>()
                .join(" "),
            child: Mutex::new(None),
            pid: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            want_key: AtomicBool::new(false),
            spawned: Mutex::new(None),
            speed: Mutex::new(None),
        });
        FfmpegLadder {
            names: rungs.iter().map(|r| r.name.clone()).collect(),
            abr: abr.clone(),
            rungs,
            tx: None,
            gate: KeyFrameGate::new(true),
            events: None,
            shared,
        }
    }
}

impl Drop for FfmpegLadder {
    fn drop(&mut self) {
        // The feeder sees the queue close and stops; a wedged ffmpeg is
        // killed so it cannot hold the feeder in a write.
        self.tx = None;
        self.shared.kill();
    }
}

impl Transcoder for FfmpegLadder {
    fn renditions(&self) -> Vec<String> {
        self.names.clone()
    }

    fn set_tracks(&mut self, tracks: &TrackSet) -> Result<(), TranscodeError> {
        if tracks.video().is_none() {
            return Err(TranscodeError("a ladder needs a video track".into()));
        }
        let tracks = Arc::new(tracks.clone());
        if let Some(tx) = &self.tx {
            return tx
                .send(Delivery::Tracks(tracks))
                .map_err(|_| TranscodeError("the ladder stopped".into()));
        }
        let (tx, rx) = channel();
        let _ = tx.send(Delivery::Tracks(tracks));
        let (out, events) = sync_channel(QUEUE);
        self.events = Some(events);
        let feeder = Feeder {
            abr: self.abr.clone(),
            rungs: self.rungs.clone(),
            shared: self.shared.clone(),
            out,
        };
        std::thread::spawn(move || feeder.run(rx));
        self.tx = Some(tx);
        Ok(())
    }

    fn push(&mut self, f: &MediaFrame) -> Result<Fed, TranscodeError> {
        let Some(tx) = &self.tx else {
            return Err(TranscodeError("no tracks yet".into()));
        };
        let room = self.shared.queued.load(Ordering::Relaxed) < QUEUE;
        if !room {
            self.shared.kill_if_wedged();
        }
        if !self.gate.admit(f, room) {
            self.shared
                .dropped
                .store(self.gate.dropped(), Ordering::Relaxed);
            return Ok(Fed::Dropped);
        }
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        self.shared.frames_in.fetch_add(1, Ordering::Relaxed);
        tx.send(Delivery::Frame(f.clone()))
            .map_err(|_| TranscodeError("the ladder stopped".into()))?;
        Ok(Fed::Queued)
    }

    fn poll_event(&mut self) -> Option<TranscodeEvent> {
        self.events.as_ref()?.try_recv().ok()
    }

    fn wants_key_frame(&mut self) -> bool {
        self.shared.want_key.swap(false, Ordering::Relaxed)
    }
}

/// The thread that runs ffmpeg for one stream, again when it dies, and
/// writes the stream to it.
struct Feeder {
    abr: Arc<Abr>,
    rungs: Vec<Rung>,
    shared: Arc<Shared>,
    /// The renditions' events, for the transcoder's `poll_event`.
    out: SyncSender<TranscodeEvent>,
}

/// How one run of ffmpeg ended.
enum RunEnd {
    /// The stream ended: stop.
    StreamEnded,
    /// ffmpeg died or stopped reading: start it again.
    Died(String),
    /// The stream's tracks changed: start again on them.
    NewTracks,
}

impl Feeder {
    fn run(self, rx: Receiver<Delivery>) {
        let mut tracks: Option<Arc<TrackSet>> = None;
        let mut backoff = BACKOFF.0;
        loop {
            let started = WallInstant::now();
            let end = self.run_once(&rx, &mut tracks);
            self.shared.pid.store(0, Ordering::Relaxed);
            if let Some(mut c) = self
                .shared
                .child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                let _ = c.kill();
                let _ = c.wait();
            }
            let why = match end {
                RunEnd::StreamEnded => return,
                // The same ladder on the new tracks, at once.
                RunEnd::NewTracks => continue,
                RunEnd::Died(why) => why,
            };
            if started.elapsed() >= BACKOFF.1 {
                backoff = BACKOFF.0;
            }
            let why = format!("ffmpeg {why}; starting it again in {} s", backoff.as_secs());
            if self.out.send(TranscodeEvent::Stopped { why }).is_err() {
                return;
            }
            // Meanwhile the stream's frames are let go (the gate waits for
            // a key frame once ffmpeg is back).
            let until = WallInstant::now() + backoff;
            loop {
                let left = until.saturating_duration_since(WallInstant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(d) => self.take(&d, &mut tracks),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            backoff = (backoff * 2).min(BACKOFF.1);
            self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes a delivery taken off the queue.
    fn take(&self, d: &Delivery, tracks: &mut Option<Arc<TrackSet>>) {
        match d {
            Delivery::Tracks(t) => *tracks = Some(t.clone()),
            Delivery::Frame(_) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            }
            Delivery::Lagged { .. } => {}
        }
    }

    fn run_once(&self, rx: &Receiver<Delivery>, tracks: &mut Option<Arc<TrackSet>>) -> RunEnd {
        // Wait for the stream's tracks.
        while tracks.is_none() {
            match rx.recv() {
                Ok(d) => self.take(&d, tracks),
                Err(_) => return RunEnd::StreamEnded,
            }
        }
        let Some(mut set) = tracks.clone() else {
            return RunEnd::StreamEnded;
        };
        // Tracks the muxer cannot take yet (an AAC track announced before
        // its configuration, say): wait for the next ones.
        let mut muxer = loop {
            match TsMuxer::new(&set, TsMuxerConfig::default()) {
                Ok(m) => break m,
                Err(e) => (self.abr.log)(format!(
                    "{}: the ladder waits for tracks it can take ({e})",
                    self.shared.resource
                )),
            }
            loop {
                match rx.recv() {
                    Ok(d) => {
                        self.take(&d, tracks);
                        if let Delivery::Tracks(t) = d {
                            set = t;
                            break;
                        }
                    }
                    Err(_) => return RunEnd::StreamEnded,
                }
            }
        };
        let audio = set.iter().any(|t| !t.codec.is_video());
        let (mut stdin, reader) = match self.spawn(audio) {
            Ok(s) => s,
            Err(e) => return RunEnd::Died(e),
        };
        self.shared.want_key.store(true, Ordering::Relaxed);
        let mut out = BytesMut::new();
        // What was queued before ffmpeg started may begin mid-GOP: it
        // starts at a key frame.
        let mut keyed = false;
        let end = loop {
            let d = match rx.recv() {
                Ok(d) => d,
                Err(_) => break RunEnd::StreamEnded,
            };
            self.take(&d, tracks);
            match d {
                Delivery::Tracks(t) if *t != *set => break RunEnd::NewTracks,
                Delivery::Frame(f) => {
                    keyed |= f.is_key();
                    if !keyed {
                        continue;
                    }
                    out.clear();
                    if muxer.write_frame(&f, &mut out).is_err() {
                        continue;
                    }
                    if let Err(e) = stdin.write_all(&out) {
                        // A pipe closed by a dying ffmpeg: its status
                        // follows within a moment.
                        let status = self.exit_status(Duration::from_millis(500));
                        break RunEnd::Died(match status {
                            Some(s) => format!("exited ({s})"),
                            None => format!("stopped reading ({e})"),
                        });
                    }
                }
                _ => {}
            }
        };
        // Closing stdin lets ffmpeg finish what it holds; it is killed
        // after a moment if it does not.
        drop(stdin);
        let deadline = WallInstant::now() + Duration::from_secs(2);
        while !reader.is_finished() && WallInstant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.kill();
        let _ = reader.join();
        end
    }

    /// The running ffmpeg's exit status, waiting up to `wait` for it.
    fn exit_status(&self, wait: Duration) -> Option<std::process::ExitStatus> {
        let until = WallInstant::now() + wait;
        loop {
            let status = self
                .shared
                .child
                .lock()
                .ok()
                .and_then(|mut c| c.as_mut().and_then(|c| c.try_wait().ok().flatten()));
            if status.is_some() || WallInstant::now() >= until {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts ffmpeg and the thread that reads its renditions.
    fn spawn(&self, audio: bool) -> Result<(ChildStdin, std::thread::JoinHandle<()>), String> {
        let mut child = Command::new(&self.abr.ffmpeg)
            .args(ffmpeg_args(&self.rungs, audio))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("could not be run ({}: {e})", self.abr.ffmpeg))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("has no pipes".into());
        };
        self.shared
            .pid
            .store(u64::from(child.id()), Ordering::Relaxed);
        *self.shared.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        *self.shared.speed.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self
            .shared
            .spawned
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(WallInstant::now());
        let reader = Reader {
            rungs: self.rungs.len(),
            audio,
            shared: self.shared.clone(),
            out: self.out.clone(),
        };
        Ok((stdin, std::thread::spawn(move || reader.run(stdout))))
    }
}

/// Reads ffmpeg's output through core's [`RenditionSplitter`] and hands
/// the events on.
struct Reader {
    rungs: usize,
    audio: bool,
    shared: Arc<Shared>,
    out: SyncSender<TranscodeEvent>,
}

impl Reader {
    fn run(self, stdout: std::process::ChildStdout) {
        let mut split = RenditionSplitter::new(self.rungs, self.audio);
        crate::transcode::read_pipe(stdout, |bytes| {
            split.push(bytes);
            while let Some(ev) = split.poll_event() {
                if let TranscodeEvent::Frame { frame, .. } = &ev {
                    if frame.codec.is_video() {
                        self.note_speed(frame);
                        self.shared.frames_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if self.out.send(ev).is_err() {
                    return false;
                }
            }
            true
        });
    }

    fn note_speed(&self, f: &MediaFrame) {
        let us = f.dts.rescale(arcly_core::time::Timescale::MICROS).ticks;
        let now = WallInstant::now();
        let mut s = self.shared.speed.lock().unwrap_or_else(|p| p.into_inner());
        *s = Some(match *s {
            None => (us, now, us, now),
            Some((m0, w0, _, _)) => (m0, w0, us, now),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladders_read_heights_and_rates_highest_first() {
        let l = parse_ladder("480p, copy,720p@2000k,360p").unwrap();
        let got: Vec<(&str, u32, u32)> = l
            .iter()
            .map(|r| (r.name.as_str(), r.height, r.kbps))
            .collect();
        assert_eq!(
            got,
            [("720p", 720, 2000), ("480p", 480, 1400), ("360p", 360, 800)]
        );
        for bad in [
            "",
            "copy",
            "720",
            "721p",
            "720p@x",
            "700p",
            "720p,720p@1000k",
            "720p@10k",
        ] {
            assert!(parse_ladder(bad).is_err(), "{bad:?} taken");
        }
        assert_eq!(parse_ladder("700p@900k").unwrap()[0].kbps, 900);
    }

    #[test]
    fn a_ladder_that_ends_forgets_only_what_is_its_own() {
        let abr = Abr {
            rungs: parse_ladder("360p").unwrap(),
            ladder_for: Arc::new(|_| None),
            owners: Mutex::default(),
            ids: AtomicU64::new(0),
            ffmpeg: "ffmpeg".into(),
            engine: Arc::default(),
            origin: None,
            clock: Clock::new(),
            jobs: Arc::default(),
            log: Arc::new(|_| {}),
        };
        let cam = StreamKey::new("live", "cam").unwrap();
        let low = StreamKey::new("live", "cam_360p").unwrap();
        abr.note(1, &cam, std::slice::from_ref(&low), true);
        assert!(abr.is_rendition(&low) && !abr.is_rendition(&cam));
        // The stream ended and came back: a new ladder started before the
        // old one's end was handled.
        abr.note(2, &cam, std::slice::from_ref(&low), true);
        assert!(!abr.note(1, &cam, std::slice::from_ref(&low), false));
        assert!(abr.is_rendition(&low), "the new ladder's rendition stays");
        assert!(abr.note(2, &cam, std::slice::from_ref(&low), false));
        assert!(!abr.is_rendition(&low));
    }

    #[test]
    fn renditions_are_named_after_their_source() {
        let key = StreamKey::new("live", "cam").unwrap();
        let r = &parse_ladder("720p").unwrap()[0];
        assert_eq!(rendition_key(&key, r).unwrap().to_string(), "live/cam_720p");
    }

    #[test]
    fn ffmpeg_gets_one_video_stream_per_rung_and_the_audio_copied() {
        let args = ffmpeg_args(&parse_ladder("480p,240p").unwrap(), true).join(" ");
        assert!(
            args.contains(
                "-filter_complex [0:v:0]split=2[s0][s1];[s0]scale=-2:480[v0];[s1]scale=-2:240[v1]"
            ),
            "{args}"
        );
        assert!(args.contains("-map [v0] -b:v:0 1400k -maxrate:v:0 1540k -bufsize:v:0 2800k"));
        assert!(args.contains("-map [v1] -b:v:1 400k"));
        assert!(args.contains("-force_key_frames source"), "{args}");
        assert!(args.contains("-map 0:a:0 -c:a copy"));
        assert!(args.starts_with(
            "-hide_banner -loglevel error -nostdin -analyzeduration 500000 -f mpegts -i pipe:0 -copyts"
        ));
        assert!(args.ends_with("-f mpegts -muxdelay 0 -muxpreload 0 -flush_packets 1 pipe:1"));
        let silent = ffmpeg_args(&parse_ladder("480p").unwrap(), false).join(" ");
        assert!(!silent.contains("0:a:0"));
    }
}
