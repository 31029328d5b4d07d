//! The media plane against real tools: streams made by ffmpeg are demuxed,
//! muxed again to MPEG-TS and to fMP4, and ffmpeg / ffprobe must decode the
//! results strictly, count the same packets, and see the same time stamps.
//!
//! These tests need `ffmpeg` and `ffprobe` on the PATH; without them they
//! fail and say so.

use arcly_core::frame::{CodecId, MediaFrame, TrackId, TrackInfo, TrackSet};
use arcly_core::media::codec::{av1, track_params, vp9};
use arcly_core::media::fmp4::{Fmp4Config, Fmp4Muxer};
use arcly_core::media::ts::{TsDemuxer, TsDemuxerConfig, TsEvent, TsMuxer, TsMuxerConfig};
use arcly_core::time::{MediaTime, Timescale};
use bytes::{Bytes, BytesMut};
use std::path::PathBuf;
use std::process::Command;

fn testdata(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn tool(name: &str) -> Command {
    match Command::new(name).arg("-version").output() {
        Ok(o) if o.status.success() => Command::new(name),
        Ok(o) => panic!(
            "{name} is required for this test but `{name} -version` failed: {:?}",
            o.status
        ),
        Err(e) => panic!("{name} is required for this test but was not found on the PATH: {e}"),
    }
}

/// A fresh file per call: tests run in parallel and may write the same input.
fn temp_file(name: &str, data: &[u8]) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("arcly-media-{}-{n}-{name}", std::process::id()));
    std::fs::write(&p, data).unwrap();
    p
}

/// `ffmpeg -v error -xerror -err_detect explode -i F -f null -` must print
/// nothing and exit 0.
fn strict_decode(path: &PathBuf) {
    let o = tool("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-xerror",
            "-err_detect",
            "explode",
            "-i",
        ])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "ffmpeg strict decode of {}: {:?}\n{err}",
        path.display(),
        o.status
    );
}

/// `codec_name,nb_read_packets` per stream, as ffprobe counts them.
fn packet_counts(path: &PathBuf) -> Vec<String> {
    let o = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    // MPEG-TS inputs list each stream twice (under the program and alone).
    v.sort();
    v.dedup();
    v
}

/// How many packets of each stream ffprobe flags as key frames (`K`), by
/// stream index.
fn key_counts(path: &PathBuf) -> Vec<usize> {
    let o = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "ffprobe failed on {}", path.display());
    let mut counts = vec![0usize; 8];
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let mut it = line.split(',');
        if let (Some(i), Some(flags)) = (it.next(), it.next()) {
            if let Ok(i) = i.parse::<usize>() {
                if i < counts.len() && flags.starts_with('K') {
                    counts[i] += 1;
                }
            }
        }
    }
    counts
}

/// `codec_tag_string,width,height` per stream of an MP4 file, sorted.
fn sample_entries(path: &PathBuf) -> Vec<String> {
    let o = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_tag_string,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "ffprobe failed on {}", path.display());
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// Per codec: the presentation times (seconds) of its packets, sorted, made
/// relative to the earliest packet of the file, so that A/V offsets compare.
fn relative_times(path: &PathBuf) -> Vec<(String, Vec<f64>)> {
    let s = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=index,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let mut codecs: Vec<(usize, String)> = String::from_utf8_lossy(&s.stdout)
        .lines()
        .filter_map(|l| {
            let (i, c) = l.trim().split_once(',')?;
            Some((i.parse().ok()?, c.to_string()))
        })
        .collect();
    codecs.sort();
    codecs.dedup();
    let codecs: Vec<String> = codecs.into_iter().map(|(_, c)| c).collect();
    let p = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let mut per: Vec<(String, Vec<f64>)> = codecs.iter().map(|c| (c.clone(), Vec::new())).collect();
    for line in String::from_utf8_lossy(&p.stdout).lines() {
        let mut it = line.split(',');
        let (Some(i), Some(t)) = (it.next(), it.next()) else {
            continue;
        };
        let (Ok(i), Ok(t)) = (i.parse::<usize>(), t.parse::<f64>()) else {
            continue;
        };
        if let Some(e) = per.get_mut(i) {
            e.1.push(t);
        }
    }
    let min = per
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(f64::INFINITY, f64::min);
    for (_, v) in per.iter_mut() {
        for t in v.iter_mut() {
            *t -= min;
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    per.sort_by(|a, b| a.0.cmp(&b.0));
    per
}

fn assert_same_times(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: stream count");
    for ((ca, ta), (cb, tb)) in a.iter().zip(b) {
        assert_eq!(ca, cb, "{what}: codecs");
        assert_eq!(ta.len(), tb.len(), "{what}: {ca} packet count");
        assert!(!ta.is_empty(), "{what}: {ca} has no packets");
        for (x, y) in ta.iter().zip(tb) {
            assert!((x - y).abs() < 5e-5, "{what}: {ca} time {x} vs {y}");
        }
    }
}

struct Demuxed {
    tracks: TrackSet,
    frames: Vec<MediaFrame>,
}

fn demux(data: &[u8]) -> Demuxed {
    let mut d = TsDemuxer::new(TsDemuxerConfig::default());
    let mut out = Demuxed {
        tracks: TrackSet::new(),
        frames: Vec::new(),
    };
    let mut drain = |d: &mut TsDemuxer| {
        while let Some(e) = d.poll_event() {
            match e {
                TsEvent::Track(t) => out.tracks.upsert(t).unwrap(),
                TsEvent::Frame(f) => out.frames.push(f),
                other => panic!("unexpected event {other:?}"),
            }
        }
    };
    for c in data.chunks(1316) {
        d.push(c);
        drain(&mut d);
    }
    d.flush();
    drain(&mut d);
    out
}

fn mux_ts(d: &Demuxed) -> Vec<u8> {
    let mut m = TsMuxer::new(&d.tracks, TsMuxerConfig::default()).unwrap();
    let mut out = BytesMut::new();
    for f in &d.frames {
        m.write_frame(f, &mut out).unwrap();
    }
    out.to_vec()
}

fn mux_fmp4(tracks: &TrackSet, frames: &[MediaFrame], config: Fmp4Config) -> (Vec<u8>, usize) {
    let mut m = Fmp4Muxer::new(tracks, config).unwrap();
    let mut out = m.init_segment().to_vec();
    let mut n = 0;
    for f in frames {
        m.push(f).unwrap();
        while let Some(frag) = m.poll_fragment() {
            out.extend_from_slice(&frag.data);
            n += 1;
        }
    }
    m.flush();
    while let Some(frag) = m.poll_fragment() {
        out.extend_from_slice(&frag.data);
        n += 1;
    }
    (out, n)
}

fn round_trip(name: &str) {
    round_trip_with_entries(name, None);
}

fn round_trip_with_entries(name: &str, entries: Option<&[&str]>) {
    let input = temp_file(name, &testdata(name));
    let d = demux(&std::fs::read(&input).unwrap());
    let want_counts = packet_counts(&input);
    let want_times = relative_times(&input);
    let want_keys = key_counts(&input);

    let ts = temp_file(&format!("out-{name}"), &mux_ts(&d));
    strict_decode(&ts);
    let mut a = key_counts(&ts);
    let mut b = want_keys.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "{name} -> TS key frames");
    assert_eq!(
        packet_counts(&ts),
        want_counts,
        "{name} -> TS packet counts"
    );
    assert_same_times(&relative_times(&ts), &want_times, &format!("{name} -> TS"));

    let (mp4, fragments) = mux_fmp4(
        &d.tracks,
        &d.frames,
        Fmp4Config {
            part_duration_us: Some(300_000),
            ..Fmp4Config::segments_of(1)
        },
    );
    assert!(fragments > 3);
    let mp4 = temp_file(&format!("out-{name}.mp4"), &mp4);
    strict_decode(&mp4);
    assert_eq!(
        packet_counts(&mp4),
        want_counts,
        "{name} -> fMP4 packet counts"
    );
    assert_same_times(
        &relative_times(&mp4),
        &want_times,
        &format!("{name} -> fMP4"),
    );
    if let Some(entries) = entries {
        assert_eq!(
            sample_entries(&mp4),
            entries,
            "{name} -> fMP4 sample entries"
        );
    }
    for p in [input, ts, mp4] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn h264_high_b_frames_and_aac_to_ts_and_fmp4() {
    round_trip_with_entries("h264_aac.ts", Some(&["avc1,320,240", "mp4a"]));
}

#[test]
fn h265_and_aac_to_ts_and_fmp4() {
    round_trip_with_entries("h265_aac.ts", Some(&["hvc1,320,240", "mp4a"]));
}

#[test]
fn h264_and_opus_to_ts_and_fmp4() {
    round_trip_with_entries("h264_opus.ts", Some(&["Opus", "avc1,320,240"]));
}

#[test]
fn mp3_to_ts_and_fmp4() {
    round_trip("mp3_audio.ts");
}

#[test]
fn stream_across_the_33_bit_wrap_to_ts_and_fmp4() {
    round_trip("h264_aac_wrap.ts");
}

/// Several audio frames per PES, as ffmpeg writes them: same packets and
/// times for ffmpeg.
#[test]
fn grouped_audio_ts() {
    for name in ["h264_aac.ts", "mp3_audio.ts"] {
        let input = temp_file(name, &testdata(name));
        let d = demux(&std::fs::read(&input).unwrap());
        let cfg = TsMuxerConfig {
            audio_frames_per_pes: 6,
            ..TsMuxerConfig::default()
        };
        let mut m = TsMuxer::new(&d.tracks, cfg).unwrap();
        let mut out = BytesMut::new();
        for f in &d.frames {
            m.write_frame(f, &mut out).unwrap();
        }
        m.flush(&mut out).unwrap();
        let ts = temp_file(&format!("grouped-{name}"), &out);
        strict_decode(&ts);
        assert_eq!(packet_counts(&ts), packet_counts(&input), "{name} grouped");
        assert_same_times(
            &relative_times(&ts),
            &relative_times(&input),
            &format!("{name} grouped"),
        );
        for p in [input, ts] {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
fn av1_to_fmp4() {
    let data = Bytes::from(testdata("av1.obu"));
    let tus = av1::split_temporal_units(data).unwrap();
    let cfg = av1::Av1Config::from_temporal_unit(&tus[0])
        .unwrap()
        .unwrap();
    let config = cfg.to_bytes();
    let mut t = TrackInfo::new(TrackId(0), CodecId::Av1, Timescale::MPEG, config.clone());
    t.params = track_params(CodecId::Av1, &config).unwrap();
    assert_eq!(t.params.codec_string.as_str(), "av01.0.00M.08");
    let mut set = TrackSet::new();
    set.upsert(t).unwrap();
    let frames: Vec<MediaFrame> = tus
        .iter()
        .enumerate()
        .map(|(i, tu)| {
            MediaFrame::video(
                TrackId(0),
                CodecId::Av1,
                av1::is_key_frame(tu, &cfg.seq).unwrap(),
                MediaTime::new(i as i64 * 3000, Timescale::MPEG),
                tu.clone(),
            )
        })
        .collect();
    let (mp4, _) = mux_fmp4(&set, &frames, Fmp4Config::segments_of(1));
    let mp4 = temp_file("av1.mp4", &mp4);
    strict_decode(&mp4);
    assert_eq!(packet_counts(&mp4), ["av1,15"]);
    assert_eq!(sample_entries(&mp4), ["av01,320,240"]);
    let _ = std::fs::remove_file(mp4);
}

#[test]
fn vp9_to_fmp4() {
    let frames = vp9::ivf_frames(&Bytes::from(testdata("vp9.ivf"))).unwrap();
    let h = vp9::FrameHeader::parse(&frames[0].1).unwrap();
    let k = h.key_info.unwrap();
    let vpcc = vp9::VpcConfig::from_key_frame(&h).unwrap();
    let mut t = TrackInfo::new(TrackId(0), CodecId::Vp9, Timescale::MPEG, vpcc.to_bytes());
    t.params = vpcc.params(k.width, k.height);
    let mut set = TrackSet::new();
    set.upsert(t).unwrap();
    let frames: Vec<MediaFrame> = frames
        .iter()
        .enumerate()
        .map(|(i, (_, f))| {
            MediaFrame::video(
                TrackId(0),
                CodecId::Vp9,
                vp9::FrameHeader::parse(f).unwrap().key,
                MediaTime::new(i as i64 * 3000, Timescale::MPEG),
                f.clone(),
            )
        })
        .collect();
    let (mp4, _) = mux_fmp4(&set, &frames, Fmp4Config::segments_of(1));
    let mp4 = temp_file("vp9.mp4", &mp4);
    strict_decode(&mp4);
    assert_eq!(packet_counts(&mp4), ["vp9,15"]);
    assert_eq!(sample_entries(&mp4), ["vp09,320,240"]);
    let _ = std::fs::remove_file(mp4);
}

fn hls_to_dir(name: &str, config: arcly_core::media::hls::HlsConfig) -> PathBuf {
    use arcly_core::media::hls::{HlsEvent, HlsSegmenter};
    let d = demux(&testdata(name));
    let dir = std::env::temp_dir().join(format!(
        "arcly-media-{}-hls-{name}-{:?}",
        std::process::id(),
        config.format
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = HlsSegmenter::new(&d.tracks, config).unwrap();
    let write = |s: &mut HlsSegmenter| {
        while let Some(e) = s.poll_event() {
            match e {
                HlsEvent::Init { uri, data }
                | HlsEvent::Part { uri, data }
                | HlsEvent::Segment { uri, data } => {
                    std::fs::write(dir.join(uri), &data).unwrap();
                }
                _ => {}
            }
        }
        std::fs::write(dir.join("live.m3u8"), s.playlist().render()).unwrap();
    };
    for f in &d.frames {
        s.push(f).unwrap();
        write(&mut s);
    }
    s.finish();
    write(&mut s);
    dir
}

#[test]
fn hls_ts_playlist_plays_in_ffmpeg() {
    use arcly_core::media::hls::{HlsConfig, SegmentFormat};
    // Plain HLS, and LL-HLS with TS parts (ffmpeg plays the segments).
    for (name, part) in [("h264_opus.ts", None), ("h264_aac.ts", Some(250_000))] {
        let input = temp_file(name, &testdata(name));
        let want = packet_counts(&input);
        let want_times = relative_times(&input);
        let _ = std::fs::remove_file(input);
        let dir = hls_to_dir(
            name,
            HlsConfig {
                format: SegmentFormat::Ts,
                target_duration: 1,
                part_duration_us: part,
                window: 100,
                ..HlsConfig::default()
            },
        );
        let m3u8 = dir.join("live.m3u8");
        if part.is_some() {
            // Each part alone is a decodable TS stream too.
            let text = std::fs::read_to_string(&m3u8).unwrap();
            assert!(text.contains("#EXT-X-PART:"), "{text}");
            strict_decode(&dir.join("seg0.0.ts"));
        }
        strict_decode(&m3u8);
        assert_eq!(packet_counts(&m3u8), want, "{name} as HLS/TS");
        assert_same_times(
            &relative_times(&m3u8),
            &want_times,
            &format!("{name} as HLS/TS"),
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn ll_hls_fmp4_playlist_plays_in_ffmpeg() {
    use arcly_core::media::hls::{HlsConfig, SegmentFormat};
    for name in ["h264_opus.ts", "h265_aac.ts"] {
        let input = temp_file(name, &testdata(name));
        let want = packet_counts(&input);
        let want_times = relative_times(&input);
        let _ = std::fs::remove_file(input);
        let dir = hls_to_dir(
            name,
            HlsConfig {
                format: SegmentFormat::Fmp4,
                target_duration: 1,
                part_duration_us: Some(333_333),
                window: 100,
                ..HlsConfig::default()
            },
        );
        let m3u8 = dir.join("live.m3u8");
        let text = std::fs::read_to_string(&m3u8).unwrap();
        assert!(
            text.contains("#EXT-X-PART:") && text.contains("#EXT-X-MAP:URI=\"init.mp4\""),
            "{text}"
        );
        strict_decode(&m3u8);
        assert_eq!(packet_counts(&m3u8), want, "{name} as LL-HLS/fMP4");
        assert_same_times(
            &relative_times(&m3u8),
            &want_times,
            &format!("{name} as LL-HLS/fMP4"),
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
