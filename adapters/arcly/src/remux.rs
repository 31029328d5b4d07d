//! `arcly remux IN OUT`: FLV or MPEG-TS in; MPEG-TS, fragmented MP4 or an
//! HLS folder out, through the kernel's media plane. The file is streamed in
//! chunks: memory stays flat whatever its length.

use arcly_core::frame::{MediaFrame, TrackSet};
use arcly_core::media::fmp4::{Fmp4Config, Fmp4Muxer};
use arcly_core::media::hls::{HlsConfig, HlsEvent, HlsSegmenter, SegmentFormat};
use arcly_core::media::ts::{TsDemuxer, TsDemuxerConfig, TsEvent, TsMuxer, TsMuxerConfig};
use arcly_core::session::SessionEvent;
use arcly_rtmp::flv_file::{FlvFileReader, TagKind};
use arcly_rtmp::ingest::Ingest;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// `arcly remux`'s arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "IN is an FLV (.flv) or MPEG-TS (.ts) file. OUT.ts gives MPEG-TS, OUT.mp4 \
fragmented MP4, a folder (or .m3u8) HLS: fMP4 segments, or MPEG-TS with --ts, index.m3u8 inside."
)]
pub struct RemuxArgs {
    /// HLS target segment duration, whole seconds
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = crate::cli::whole::<u32>)]
    pub segment: u32,
    /// MPEG-TS segments for HLS output instead of fMP4
    #[arg(long)]
    pub ts: bool,
    /// An FLV or MPEG-TS file
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// OUT.ts, OUT.mp4, or a folder (or .m3u8) for HLS
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
}

const CHUNK: usize = 1 << 20;
/// Frames held while the demuxer is still discovering tracks.
const MAX_HELD: usize = 600;

// One of each per run: their sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Input {
    Flv {
        ingest: Ingest,
        reader: FlvFileReader,
    },
    Ts(TsDemuxer),
}

#[allow(clippy::large_enum_variant)]
enum Output {
    Ts {
        mux: TsMuxer,
        buf: BytesMut,
        file: BufWriter<File>,
    },
    Mp4 {
        mux: Fmp4Muxer,
        file: BufWriter<File>,
    },
    Hls {
        seg: HlsSegmenter,
        dir: PathBuf,
    },
}

struct Remux {
    tracks: TrackSet,
    held: Vec<MediaFrame>,
    out: Option<Output>,
    target: PathBuf,
    kind: OutKind,
    hls: HlsConfig,
    frames: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum OutKind {
    Ts,
    Mp4,
    Hls,
}

fn io<'a>(what: &'a str, path: &'a Path) -> impl Fn(std::io::Error) -> String + 'a {
    move |e| format!("{what} {}: {e}", path.display())
}

impl Remux {
    fn frame(&mut self, f: MediaFrame) -> Result<(), String> {
        if self.out.is_none() {
            self.held.push(f);
            let has_video = self.tracks.has_video();
            let has_audio = self.tracks.audio().is_some();
            if (has_video && has_audio) || self.held.len() >= MAX_HELD {
                self.open()?;
            }
            return Ok(());
        }
        self.write(&f)
    }

    fn open(&mut self) -> Result<(), String> {
        if self.tracks.is_empty() {
            return Err("no track found in the input".into());
        }
        let t = &self.target;
        self.out = Some(match self.kind {
            OutKind::Ts => Output::Ts {
                mux: TsMuxer::new(&self.tracks, TsMuxerConfig::default())
                    .map_err(|e| e.to_string())?,
                buf: BytesMut::with_capacity(CHUNK),
                file: BufWriter::with_capacity(
                    CHUNK,
                    File::create(t).map_err(io("cannot create", t))?,
                ),
            },
            OutKind::Mp4 => {
                let mux = Fmp4Muxer::new(&self.tracks, Fmp4Config::segments_of(2))
                    .map_err(|e| e.to_string())?;
                let mut file = BufWriter::with_capacity(
                    CHUNK,
                    File::create(t).map_err(io("cannot create", t))?,
                );
                file.write_all(&mux.init_segment())
                    .map_err(io("cannot write", t))?;
                Output::Mp4 { mux, file }
            }
            OutKind::Hls => {
                std::fs::create_dir_all(t).map_err(io("cannot create", t))?;
                Output::Hls {
                    seg: HlsSegmenter::new(&self.tracks, self.hls).map_err(|e| e.to_string())?,
                    dir: t.clone(),
                }
            }
        });
        for f in std::mem::take(&mut self.held) {
            self.write(&f)?;
        }
        Ok(())
    }

    fn write(&mut self, f: &MediaFrame) -> Result<(), String> {
        self.frames += 1;
        let t = &self.target;
        match self.out.as_mut() {
            Some(Output::Ts { mux, buf, file }) => {
                mux.write_frame(f, buf).map_err(|e| e.to_string())?;
                if buf.len() >= CHUNK {
                    file.write_all(buf).map_err(io("cannot write", t))?;
                    buf.clear();
                }
            }
            Some(Output::Mp4 { mux, file }) => {
                mux.push(f).map_err(|e| e.to_string())?;
                while let Some(frag) = mux.poll_fragment() {
                    file.write_all(&frag.data).map_err(io("cannot write", t))?;
                }
            }
            Some(Output::Hls { seg, dir }) => {
                seg.push(f).map_err(|e| e.to_string())?;
                drain_hls(seg, dir)?;
            }
            None => {}
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64, String> {
        if self.out.is_none() {
            self.open()?;
        }
        let t = self.target.clone();
        match self.out.take() {
            Some(Output::Ts { buf, mut file, .. }) => {
                file.write_all(&buf).map_err(io("cannot write", &t))?;
                file.flush().map_err(io("cannot write", &t))?;
            }
            Some(Output::Mp4 { mut mux, mut file }) => {
                mux.flush();
                while let Some(frag) = mux.poll_fragment() {
                    file.write_all(&frag.data).map_err(io("cannot write", &t))?;
                }
                file.flush().map_err(io("cannot write", &t))?;
            }
            Some(Output::Hls { mut seg, dir }) => {
                seg.finish();
                drain_hls(&mut seg, &dir)?;
                let playlist = dir.join("index.m3u8");
                std::fs::write(&playlist, seg.playlist().render())
                    .map_err(io("cannot write", &playlist))?;
            }
            None => {}
        }
        Ok(self.frames)
    }
}

fn drain_hls(seg: &mut HlsSegmenter, dir: &Path) -> Result<(), String> {
    while let Some(ev) = seg.poll_event() {
        if let HlsEvent::Init { uri, data } | HlsEvent::Segment { uri, data } = ev {
            let p = dir.join(&uri);
            std::fs::write(&p, &data).map_err(io("cannot write", &p))?;
        }
    }
    Ok(())
}

pub fn run(args: RemuxArgs) -> Result<String, String> {
    let hls = HlsConfig {
        window: usize::MAX,
        target_duration: args.segment.max(1),
        format: if args.ts {
            SegmentFormat::Ts
        } else {
            HlsConfig::default().format
        },
        ..HlsConfig::default()
    };
    let (input, target) = (&args.input, &args.output);
    let ext = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let kind = match ext(target).as_str() {
        "ts" => OutKind::Ts,
        "mp4" | "m4s" | "m4v" => OutKind::Mp4,
        _ => OutKind::Hls,
    };
    let target = if ext(target) == "m3u8" {
        target.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        target.clone()
    };
    let mut file = File::open(input).map_err(io("cannot open", input))?;
    let mut first = [0u8; 3];
    file.read_exact(&mut first)
        .map_err(io("cannot read", input))?;
    let mut src = if &first == b"FLV" {
        let mut reader = FlvFileReader::new(64 << 20);
        reader.push(&first);
        Input::Flv {
            ingest: Ingest::new(u32::MAX),
            reader,
        }
    } else if first[0] == 0x47 {
        let mut d = TsDemuxer::new(TsDemuxerConfig::default());
        d.push(&first);
        Input::Ts(d)
    } else {
        return Err(format!("{}: neither FLV nor MPEG-TS", input.display()));
    };
    let mut r = Remux {
        tracks: TrackSet::new(),
        held: Vec::new(),
        out: None,
        target,
        kind,
        hls,
        frames: 0,
    };
    let mut chunk = vec![0u8; CHUNK];
    let mut events = VecDeque::new();
    loop {
        let n = file.read(&mut chunk).map_err(io("cannot read", input))?;
        match &mut src {
            Input::Flv { ingest, reader } => {
                reader.push(&chunk[..n]);
                while let Some(tag) = reader.next_tag().map_err(|e| e.to_string())? {
                    let r = match tag.kind {
                        TagKind::Audio => ingest.audio(tag.timestamp, &tag.body, &mut events),
                        TagKind::Video => ingest.video(tag.timestamp, &tag.body, &mut events),
                        _ => Ok(()),
                    };
                    r.map_err(|e| format!("FLV tag at {} ms: {e}", tag.timestamp))?;
                }
                for ev in events.drain(..) {
                    match ev {
                        SessionEvent::Tracks(t) => r.tracks = *t,
                        SessionEvent::Frame(f) => r.frame(f)?,
                        _ => {}
                    }
                }
            }
            Input::Ts(d) => {
                if n == 0 {
                    d.flush();
                } else {
                    d.push(&chunk[..n]);
                }
                while let Some(ev) = d.poll_event() {
                    match ev {
                        TsEvent::Track(t) => {
                            r.tracks.upsert(t).map_err(|e| e.to_string())?;
                        }
                        TsEvent::Frame(f) => r.frame(f)?,
                        _ => {}
                    }
                }
            }
        }
        if n == 0 {
            break;
        }
    }
    let codecs: Vec<&str> = r.tracks.iter().map(|t| t.codec.name()).collect();
    let codecs = codecs.join(" + ");
    let target = r.target.display().to_string();
    let frames = r.finish()?;
    Ok(format!("remuxed {frames} frames ({codecs}) into {target}"))
}
