//! Media helpers of the interop tests: a test file made by ffmpeg, the
//! packets ffprobe sees in a file, the frame-exact comparison of what was
//! published and what was played, and stopping a peer as a person would.

use super::peers::{ffmpeg5, ffprobe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A 6-second test file, MPEG-TS: H.264 320x240 at 30 fps (GOP 30, no
/// B-frames) and AAC.
pub fn make_ts(dir: &Path) -> PathBuf {
    let out = dir.join("in.ts");
    let st = Command::new(ffmpeg5())
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "6",
        ])
        .args([
            "-c:v", "libx264", "-bf", "0", "-g", "30", "-pix_fmt", "yuv420p", "-b:v", "800k",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "mpegts"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success(), "making the test file failed");
    out
}

/// (codec type, pts ms, key) of every packet, per ffprobe.
pub fn packets(file: &Path) -> Vec<(String, i64, bool)> {
    let out = Command::new(ffprobe())
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts_time,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            let kind = it.next()?.to_string();
            let pts: f64 = it.next()?.parse().ok()?;
            Some((
                kind,
                (pts * 1000.0).round() as i64,
                it.next().unwrap_or("").starts_with('K'),
            ))
        })
        .collect()
}

/// The played file holds every video frame of the input from one of its
/// key frames to its end, at the same relative times (all but the first
/// frame's, which an RTP player may have to guess), and the audio after
/// it; and it decodes strictly.
pub fn assert_frame_exact(input: &Path, played: &Path, what: &str) {
    if let Err(e) = frame_exact_with(input, played, 3) {
        panic!("{what}: {e}");
    }
}

/// [`assert_frame_exact`] allowing `audio_slack` audio frames fewer than
/// the input (ffmpeg's RTP muxer packs several AAC frames in a packet and
/// does not send the last, partly filled one when it ends).
pub fn assert_frame_exact_slack(input: &Path, played: &Path, what: &str, audio_slack: i64) {
    if let Err(e) = frame_exact_with(input, played, audio_slack) {
        panic!("{what}: {e}");
    }
}

/// What [`assert_frame_exact`] asserts, as a verdict.
pub fn frame_exact(input: &Path, played: &Path) -> Result<(), String> {
    frame_exact_with(input, played, 3)
}

/// What [`assert_frame_exact_slack`] asserts, as a verdict.
pub fn frame_exact_with(input: &Path, played: &Path, audio_slack: i64) -> Result<(), String> {
    let inp = packets(input);
    let out = packets(played);
    let vin: Vec<_> = inp.iter().filter(|p| p.0 == "video").collect();
    let vout: Vec<_> = out.iter().filter(|p| p.0 == "video").collect();
    if vout.len() < 30 {
        return Err(format!("only {} video frames played", vout.len()));
    }
    if vout.len() > vin.len() {
        return Err("more video played than published".into());
    }
    let k = vin.len() - vout.len();
    if !(vin[k].2 && vout[0].2) {
        return Err(format!(
            "{} of {} video frames: the played video does not start at a key frame of the input",
            vout.len(),
            vin.len()
        ));
    }
    // Times relative to the second frame: ffmpeg gives the first H.264
    // frame it takes from RTP no time (seen with GStreamer's RTSP server
    // too) and writes it at the earliest time of any stream.
    let rel = |v: &[&(String, i64, bool)]| -> Vec<i64> { v.iter().map(|p| p.1 - v[1].1).collect() };
    let off = rel(&vin[k..])
        .iter()
        .zip(rel(&vout))
        .skip(1)
        .filter(|(a, b)| (**a - *b).abs() > 1)
        .count();
    if off != 0 {
        return Err(format!("{off} video times differ from the input's"));
    }
    let key_t = vin[k].1;
    let ain = inp
        .iter()
        .filter(|p| p.0 == "audio" && p.1 >= key_t)
        .count() as i64;
    let aout = out.iter().filter(|p| p.0 == "audio").count() as i64;
    if aout < ain - audio_slack {
        return Err(format!("audio {aout} played of {ain}"));
    }
    let dec = Command::new(ffmpeg5())
        .args(["-v", "error", "-xerror", "-err_detect", "explode", "-i"])
        .arg(played)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let err = String::from_utf8_lossy(&dec.stderr);
    if !dec.status.success() || !err.trim().is_empty() {
        return Err(format!("strict decoding failed: {}", err.trim()));
    }
    Ok(())
}

/// Asks `child` to stop as a person at its terminal would (SIGINT): the SRT
/// tools then close their sockets cleanly (a shutdown to the peer) and
/// GStreamer with `-e` ends its pipeline with an end of stream, flushing
/// its files.
pub fn interrupt(child: &Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill -INT {} failed", child.id());
}

pub fn finish(mut child: Child, what: &str, limit: Duration) {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            assert!(status.success(), "{what} exited with {status}: {err}");
            return;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
