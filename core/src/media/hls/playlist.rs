//! The media playlist (RFC 8216bis §4.4.3-4.4.5): `EXT-X-TARGETDURATION`,
//! `EXT-X-MEDIA-SEQUENCE`, `EXT-X-DISCONTINUITY-SEQUENCE`, `EXT-X-MAP`,
//! `EXTINF`, `EXT-X-DISCONTINUITY`, `EXT-X-ENDLIST`; for Low-Latency HLS
//! `EXT-X-SERVER-CONTROL` (§4.4.3.8), `EXT-X-PART-INF` (§4.4.3.7),
//! `EXT-X-PART` (§4.4.4.9), `EXT-X-PRELOAD-HINT` (§4.4.5.3) and delta
//! updates with `EXT-X-SKIP` (§4.4.5.2); and the answer to a blocking
//! playlist reload with `_HLS_msn`/`_HLS_part`/`_HLS_skip` (§6.2.5.2).
//!
//! A playlist can be rendered with a query appended to every URI it names
//! ([`MediaPlaylist::render_with`]): an origin that protects its media with a
//! per-client token carries the client's token to the init segment, the
//! segments, the parts, the preload hint and the rendition reports, so that
//! a player fetching only what the playlist names is authorized. Players add
//! their own delivery directives (`_HLS_msn`, ...) to such URIs with `&`.

use alloc::collections::VecDeque;
use alloc::string::String;
use core::fmt::Write;

/// A partial segment.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaylistPart {
    /// Its URI.
    pub uri: String,
    /// Its duration in seconds.
    pub duration: f64,
    /// It starts with an independent frame.
    pub independent: bool,
}

/// A complete media segment.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaylistSegment {
    /// Its media sequence number.
    pub msn: u64,
    /// Its URI.
    pub uri: String,
    /// Its duration in seconds.
    pub duration: f64,
    /// A discontinuity comes before it.
    pub discontinuity: bool,
    /// Its parts (LL-HLS), kept while the segment is recent.
    pub parts: alloc::vec::Vec<PlaylistPart>,
    /// The `EXT-X-MAP` (init segment) URI in force for it, if any.
    pub map: Option<String>,
    /// It starts with a frame a decoder can start at.
    pub independent: bool,
    /// Wall-clock time of its first sample, Unix milliseconds
    /// (`EXT-X-PROGRAM-DATE-TIME`, §4.4.4.6), when the host gave a clock.
    pub program_date_time_ms: Option<i64>,
}

/// `EXT-X-PLAYLIST-TYPE` (RFC 8216bis §4.4.3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaylistType {
    /// Segments are only ever appended (a recording in progress).
    Event,
    /// The playlist never changes.
    Vod,
}

/// Where another rendition of the same content stands, for
/// `EXT-X-RENDITION-REPORT` (RFC 8216bis §4.4.5.4): LL-HLS media playlists
/// report every other rendition of the multivariant playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionReport {
    /// The other rendition's media playlist URI.
    pub uri: String,
    /// Its last media sequence number (`LAST-MSN`).
    pub last_msn: u64,
    /// Its last part index in that segment (`LAST-PART`), when it has parts.
    pub last_part: Option<u64>,
}

/// How a blocking playlist request is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockingAnswer {
    /// The playlist holds what was asked for: send it.
    Ready(String),
    /// Not yet: hold the request and ask again when the playlist changes
    /// (answer 503 if it has not after three target durations).
    Wait,
    /// The request is malformed or asks too far ahead: answer 400.
    BadRequest,
}

/// [`MediaPlaylist::blocking_check`]'s answer: [`BlockingAnswer`] without
/// the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockingCheck {
    /// Render the playlist and send it.
    Ready,
    /// Hold the request until the playlist changes.
    Wait,
    /// Answer 400.
    BadRequest,
}

/// A live media playlist with a sliding window.
#[derive(Clone, Debug)]
pub struct MediaPlaylist {
    /// The configured target duration in whole seconds (raised if a
    /// segment's rounded duration is longer).
    pub target_duration: u32,
    /// Segments kept in the playlist.
    pub window: usize,
    /// `PART-TARGET` in seconds for LL-HLS.
    pub part_target: Option<f64>,
    /// `EXT-X-PLAYLIST-TYPE`, if any (a live sliding window has none).
    pub playlist_type: Option<PlaylistType>,
    /// Reports on the other renditions (LL-HLS), written at the end.
    pub rendition_reports: alloc::vec::Vec<RenditionReport>,
    /// The `EXT-X-MAP` URI for fMP4: the init segment of the segments
    /// completed from now on (each segment keeps the one it was made with).
    pub map_uri: Option<String>,
    segments: VecDeque<PlaylistSegment>,
    next_msn: u64,
    discontinuity_sequence: u64,
    open_parts: alloc::vec::Vec<PlaylistPart>,
    open_uri: String,
    preload_hint: Option<String>,
    ended: bool,
    longest: f64,
    pending_discontinuity: bool,
    pending_dependent: bool,
}

/// How many of the newest segments keep their parts listed (RFC 8216bis
/// §4.4.4.9: parts of segments more than three target durations from the
/// end may be removed).
const SEGMENTS_WITH_PARTS: usize = 4;

impl MediaPlaylist {
    /// An empty playlist.
    pub fn new(target_duration: u32, window: usize) -> Self {
        MediaPlaylist {
            target_duration: target_duration.max(1),
            window: window.max(1),
            part_target: None,
            map_uri: None,
            rendition_reports: alloc::vec::Vec::new(),
            playlist_type: None,
            segments: VecDeque::new(),
            next_msn: 0,
            discontinuity_sequence: 0,
            open_parts: alloc::vec::Vec::new(),
            open_uri: String::new(),
            preload_hint: None,
            ended: false,
            longest: 0.0,
            pending_discontinuity: false,
            pending_dependent: false,
        }
    }

    /// `EXT-X-TARGETDURATION`: the configured value or the longest segment
    /// rounded to the nearest second, whichever is larger (§4.4.3.1).
    pub fn target_duration(&self) -> u32 {
        let longest = libm_round(self.longest) as u32;
        self.target_duration.max(longest)
    }

    /// The media sequence number of the first segment listed.
    pub fn media_sequence(&self) -> u64 {
        self.segments.front().map_or(self.next_msn, |s| s.msn)
    }

    /// The media sequence number the next completed segment will have (the
    /// one in progress).
    pub fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// The segments listed.
    pub fn segments(&self) -> impl Iterator<Item = &PlaylistSegment> {
        self.segments.iter()
    }

    /// The parts of the segment in progress.
    pub fn open_parts(&self) -> &[PlaylistPart] {
        &self.open_parts
    }

    /// Marks the next segment as not starting with an independent frame
    /// (a cut forced by size inside a GOP); the playlist then no longer
    /// claims `EXT-X-INDEPENDENT-SEGMENTS`.
    pub fn mark_dependent(&mut self) {
        self.pending_dependent = true;
    }

    /// Marks a discontinuity before the next segment.
    pub fn mark_discontinuity(&mut self) {
        self.pending_discontinuity = true;
    }

    /// Adds a part to the segment in progress (`segment_uri` names that
    /// segment) and sets the next preload hint.
    pub fn push_part(&mut self, segment_uri: &str, part: PlaylistPart, next_hint: Option<String>) {
        if self.open_parts.is_empty() {
            self.open_uri = String::from(segment_uri);
        }
        self.open_parts.push(part);
        self.preload_hint = next_hint;
    }

    /// Completes the segment in progress; returns the URIs of segments that
    /// fell out of the window (their media can be deleted).
    pub fn push_segment(&mut self, uri: String, duration: f64) -> alloc::vec::Vec<String> {
        self.push_segment_at(uri, duration, None)
    }

    /// [`push_segment`](Self::push_segment) with the wall-clock time of the
    /// segment's first sample (Unix milliseconds), written as
    /// `EXT-X-PROGRAM-DATE-TIME`.
    pub fn push_segment_at(
        &mut self,
        uri: String,
        duration: f64,
        program_date_time_ms: Option<i64>,
    ) -> alloc::vec::Vec<String> {
        let seg = PlaylistSegment {
            independent: !core::mem::take(&mut self.pending_dependent),
            program_date_time_ms,
            msn: self.next_msn,
            uri,
            duration,
            discontinuity: core::mem::take(&mut self.pending_discontinuity),
            parts: core::mem::take(&mut self.open_parts),
            map: self.map_uri.clone(),
        };
        self.next_msn += 1;
        if duration > self.longest {
            self.longest = duration;
        }
        self.segments.push_back(seg);
        let n = self.segments.len();
        for s in self
            .segments
            .iter_mut()
            .take(n.saturating_sub(SEGMENTS_WITH_PARTS))
        {
            s.parts.clear();
        }
        let mut removed = alloc::vec::Vec::new();
        while self.segments.len() > self.window {
            if let Some(old) = self.segments.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
                removed.push(old.uri);
            }
        }
        removed
    }

    /// Sets the preload hint (the next part's URI) without adding a part.
    pub fn set_preload_hint(&mut self, uri: Option<String>) {
        self.preload_hint = uri;
    }

    /// Ends the stream (`EXT-X-ENDLIST`).
    pub fn end(&mut self) {
        self.ended = true;
        self.preload_hint = None;
    }

    /// Whether the stream has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn version(&self) -> u32 {
        if self.part_target.is_some() {
            9
        } else if self.map_uri.is_some() {
            6
        } else {
            3
        }
    }

    /// `CAN-SKIP-UNTIL`: six target durations (§4.4.3.8).
    fn skip_until(&self) -> f64 {
        6.0 * f64::from(self.target_duration())
    }

    /// Renders the full playlist.
    pub fn render(&self) -> String {
        self.render_with(false, None)
    }

    /// Renders a delta update (`_HLS_skip=YES`): segments older than
    /// `CAN-SKIP-UNTIL` from the end are replaced by `EXT-X-SKIP`.
    pub fn render_delta(&self) -> String {
        self.render_with(true, None)
    }

    /// Renders the playlist (a delta update when `delta`) with `uri_query`
    /// (already percent-encoded, e.g. `token=abc`) appended to every URI it
    /// names: `EXT-X-MAP`, segments, parts, the preload hint and rendition
    /// reports.
    pub fn render_with(&self, delta: bool, uri_query: Option<&str>) -> String {
        let q = uri_query.filter(|q| !q.is_empty());
        let mut s = String::with_capacity(256 + 64 * self.segments.len());
        let _ = writeln!(s, "#EXTM3U");
        let _ = writeln!(s, "#EXT-X-VERSION:{}", self.version());
        let _ = writeln!(s, "#EXT-X-TARGETDURATION:{}", self.target_duration());
        if !self.segments.is_empty() && self.segments.iter().all(|x| x.independent) {
            // Every segment starts at a random access point (§4.4.2.1).
            let _ = writeln!(s, "#EXT-X-INDEPENDENT-SEGMENTS");
        }
        if let Some(part) = self.part_target {
            let _ = writeln!(
                s,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},HOLD-BACK={:.3},PART-HOLD-BACK={:.3}",
                self.skip_until(),
                // §4.4.3.8: at least three target durations.
                3.0 * f64::from(self.target_duration()),
                3.0 * part
            );
            let _ = writeln!(s, "#EXT-X-PART-INF:PART-TARGET={part:.3}");
        }
        match self.playlist_type {
            Some(PlaylistType::Event) => {
                let _ = writeln!(s, "#EXT-X-PLAYLIST-TYPE:EVENT");
            }
            Some(PlaylistType::Vod) => {
                let _ = writeln!(s, "#EXT-X-PLAYLIST-TYPE:VOD");
            }
            None => {}
        }
        let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence());
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                s,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        // Delta update: skip the segments wholly older than the skip boundary.
        let mut skip = 0usize;
        if delta && self.part_target.is_some() {
            let total: f64 = self.segments.iter().map(|x| x.duration).sum();
            let mut from_start = 0.0;
            for seg in &self.segments {
                if total - from_start - seg.duration < self.skip_until() {
                    break;
                }
                if seg.discontinuity {
                    break; // EXT-X-SKIP cannot cover a discontinuity tag here
                }
                from_start += seg.duration;
                skip += 1;
            }
            if skip > 0 {
                let _ = writeln!(s, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skip}");
            }
        }
        // EXT-X-MAP before the first segment and wherever the init segment
        // changes (§4.4.4.5).
        let mut map: Option<&str> = None;
        for seg in self.segments.iter().skip(skip) {
            if seg.discontinuity {
                let _ = writeln!(s, "#EXT-X-DISCONTINUITY");
            }
            write_map(&mut s, &mut map, seg.map.as_deref(), q);
            if let Some(ms) = seg.program_date_time_ms {
                let _ = write!(s, "#EXT-X-PROGRAM-DATE-TIME:");
                write_iso8601(&mut s, ms);
                let _ = writeln!(s);
            }
            for p in &seg.parts {
                write_part(&mut s, p, q);
            }
            let _ = writeln!(s, "#EXTINF:{:.5},", seg.duration);
            let _ = writeln!(s, "{}", Uri(&seg.uri, q));
        }
        if !self.ended {
            if self.pending_discontinuity && !self.open_parts.is_empty() {
                let _ = writeln!(s, "#EXT-X-DISCONTINUITY");
            }
            if !self.open_parts.is_empty() || self.segments.is_empty() {
                write_map(&mut s, &mut map, self.map_uri.as_deref(), q);
            }
            for p in &self.open_parts {
                write_part(&mut s, p, q);
            }
            if let Some(h) = &self.preload_hint {
                let _ = writeln!(s, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", Uri(h, q));
            }
            for r in &self.rendition_reports {
                let _ = write!(
                    s,
                    "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
                    Uri(&r.uri, q),
                    r.last_msn
                );
                if let Some(p) = r.last_part {
                    let _ = write!(s, ",LAST-PART={p}");
                }
                let _ = writeln!(s);
            }
        } else {
            let _ = writeln!(s, "#EXT-X-ENDLIST");
        }
        s
    }

    /// Answers a playlist request with the LL-HLS delivery directives
    /// `_HLS_msn`, `_HLS_part` and `_HLS_skip` (§6.2.5.2).
    pub fn blocking_request(
        &self,
        msn: Option<u64>,
        part: Option<u64>,
        skip: bool,
    ) -> BlockingAnswer {
        self.blocking_request_with(msn, part, skip, None)
    }

    /// [`blocking_request`](Self::blocking_request), the playlist rendered
    /// with `uri_query` appended to its URIs (see
    /// [`render_with`](Self::render_with)).
    pub fn blocking_request_with(
        &self,
        msn: Option<u64>,
        part: Option<u64>,
        skip: bool,
        uri_query: Option<&str>,
    ) -> BlockingAnswer {
        match self.blocking_check(msn, part) {
            BlockingCheck::Ready => BlockingAnswer::Ready(self.render_with(skip, uri_query)),
            BlockingCheck::Wait => BlockingAnswer::Wait,
            BlockingCheck::BadRequest => BlockingAnswer::BadRequest,
        }
    }

    /// Whether a request for `_HLS_msn` / `_HLS_part` can be answered now,
    /// without rendering: the body is the same for every such request of
    /// one version of the playlist (it depends only on `_HLS_skip` and the
    /// query carried to URIs), so a server renders it once per update and
    /// shares it.
    pub fn blocking_check(&self, msn: Option<u64>, part: Option<u64>) -> BlockingCheck {
        let Some(msn) = msn else {
            return if part.is_some() {
                BlockingCheck::BadRequest
            } else {
                BlockingCheck::Ready
            };
        };
        if self.ended {
            return BlockingCheck::Ready;
        }
        // More than two segments ahead of the last one listed (whose number
        // is next_msn - 1, even before there is one): 400.
        if msn > self.next_msn + 1 {
            return BlockingCheck::BadRequest;
        }
        let ready = match part {
            None => msn < self.next_msn,
            Some(p) => {
                msn < self.next_msn
                    || (msn == self.next_msn && (p as usize) < self.open_parts.len())
            }
        };
        if ready {
            BlockingCheck::Ready
        } else {
            BlockingCheck::Wait
        }
    }
}

/// Writes Unix milliseconds as an ISO 8601 UTC date-time with milliseconds
/// (RFC 3339), e.g. `2023-11-14T22:13:20.123Z`.
fn write_iso8601(s: &mut String, ms: i64) {
    let _ = write!(
        s,
        "{}",
        crate::time::UtcTime {
            unix_ms: ms,
            millis: true
        }
    );
}

/// A URI as written: with the query appended, if there is one.
struct Uri<'a>(&'a str, Option<&'a str>);

impl core::fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)?;
        if let Some(q) = self.1 {
            f.write_str(if self.0.contains('?') { "&" } else { "?" })?;
            f.write_str(q)?;
        }
        Ok(())
    }
}

/// Writes `EXT-X-MAP` when `want` differs from the map in force.
fn write_map<'a>(
    s: &mut String,
    current: &mut Option<&'a str>,
    want: Option<&'a str>,
    q: Option<&str>,
) {
    if let Some(w) = want {
        if *current != Some(w) {
            let _ = writeln!(s, "#EXT-X-MAP:URI=\"{}\"", Uri(w, q));
            *current = Some(w);
        }
    }
}

fn write_part(s: &mut String, p: &PlaylistPart, q: Option<&str>) {
    let _ = write!(
        s,
        "#EXT-X-PART:DURATION={:.5},URI=\"{}\"",
        p.duration,
        Uri(&p.uri, q)
    );
    if p.independent {
        let _ = write!(s, ",INDEPENDENT=YES");
    }
    let _ = writeln!(s);
}

/// Rounds to the nearest integer without `std` (ties away from zero).
fn libm_round(x: f64) -> f64 {
    let t = x as i64 as f64;
    if x - t >= 0.5 {
        t + 1.0
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn part(uri: &str, independent: bool) -> PlaylistPart {
        PlaylistPart {
            uri: uri.into(),
            duration: 0.5,
            independent,
        }
    }

    #[test]
    fn sliding_window_and_target_duration() {
        let mut p = MediaPlaylist::new(2, 3);
        for i in 0..5 {
            let removed = p.push_segment(format!("seg{i}.ts"), if i == 2 { 2.6 } else { 2.0 });
            assert_eq!(removed.len(), usize::from(i >= 3));
        }
        let s = p.render();
        assert!(s.contains("#EXT-X-TARGETDURATION:3\n"), "{s}");
        assert!(s.contains("#EXT-X-MEDIA-SEQUENCE:2\n"));
        assert!(!s.contains("seg1.ts") && s.contains("seg4.ts"));
        assert!(s.contains("#EXTINF:2.60000,\nseg2.ts"));
        p.end();
        assert!(p.render().ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn discontinuity_sequence_counts_removed_discontinuities() {
        let mut p = MediaPlaylist::new(2, 2);
        p.push_segment("a".into(), 2.0);
        p.mark_discontinuity();
        p.push_segment("b".into(), 2.0);
        assert!(p
            .render()
            .contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.00000,\nb\n"));
        p.push_segment("c".into(), 2.0);
        p.push_segment("d".into(), 2.0);
        assert!(p.render().contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
    }

    #[test]
    fn ll_hls_parts_hints_and_blocking() {
        let mut p = MediaPlaylist::new(2, 10);
        p.part_target = Some(0.5);
        p.map_uri = Some("init.mp4".into());
        assert_eq!(
            p.blocking_request(Some(0), None, false),
            BlockingAnswer::Wait
        );
        assert_eq!(
            p.blocking_request(Some(3), None, false),
            BlockingAnswer::BadRequest
        );
        assert_eq!(
            p.blocking_request(None, Some(1), false),
            BlockingAnswer::BadRequest
        );
        p.push_part(
            "seg0.m4s",
            part("seg0.0.m4s", true),
            Some("seg0.1.m4s".into()),
        );
        assert!(matches!(
            p.blocking_request(Some(0), Some(0), false),
            BlockingAnswer::Ready(_)
        ));
        assert_eq!(
            p.blocking_request(Some(0), Some(1), false),
            BlockingAnswer::Wait
        );
        let s = p.render();
        assert!(s.contains("#EXT-X-VERSION:9\n"));
        assert!(s.contains(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,HOLD-BACK=6.000,PART-HOLD-BACK=1.500\n"
        ));
        assert!(s.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        assert!(s.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
        assert!(s.contains("#EXT-X-PART:DURATION=0.50000,URI=\"seg0.0.m4s\",INDEPENDENT=YES\n"));
        assert!(s.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg0.1.m4s\"\n"));
        p.push_part(
            "seg0.m4s",
            part("seg0.1.m4s", false),
            Some("seg1.0.m4s".into()),
        );
        p.push_segment("seg0.m4s".into(), 1.0);
        assert!(matches!(
            p.blocking_request(Some(0), None, false),
            BlockingAnswer::Ready(_)
        ));
        assert!(matches!(
            p.blocking_request(Some(0), Some(7), false),
            BlockingAnswer::Ready(_)
        ));
        assert_eq!(
            p.blocking_request(Some(1), Some(0), false),
            BlockingAnswer::Wait
        );
    }

    proptest::proptest! {
        /// Whatever the segment durations: every EXTINF rounds to at most
        /// the target duration, the window holds, the media sequence counts
        /// removed segments, and a delta update lists the same last segments.
        #[test]
        fn playlist_invariants(durations in proptest::collection::vec(0.1f64..12.0, 1..60), window in 1usize..10, target in 1u32..6) {
            let mut p = MediaPlaylist::new(target, window);
            p.part_target = Some(0.5);
            let mut removed = 0;
            for (i, d) in durations.iter().enumerate() {
                removed += p.push_segment(format!("s{i}.m4s"), *d).len();
            }
            let text = p.render();
            let t: u32 = text.lines().find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:")).unwrap().parse().unwrap();
            for l in text.lines().filter_map(|l| l.strip_prefix("#EXTINF:")) {
                let d: f64 = l.trim_end_matches(',').parse().unwrap();
                proptest::prop_assert!(libm_round(d) as u32 <= t);
            }
            proptest::prop_assert_eq!(text.matches("#EXTINF").count(), durations.len().min(window));
            proptest::prop_assert_eq!(p.media_sequence() as usize, removed);
            let delta = p.render_delta();
            let last = format!("s{}.m4s", durations.len() - 1);
            proptest::prop_assert!(delta.contains(&last));
            let skipped: usize = delta.lines().find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS=")).map_or(0, |n| n.parse().unwrap());
            proptest::prop_assert_eq!(delta.matches("#EXTINF").count() + skipped, durations.len().min(window));
        }
    }

    #[test]
    fn rendition_reports_close_a_live_playlist() {
        let mut p = MediaPlaylist::new(2, 5);
        p.part_target = Some(0.5);
        p.push_segment("a.m4s".into(), 2.0);
        p.rendition_reports.push(RenditionReport {
            uri: "../720p/live.m3u8".into(),
            last_msn: 0,
            last_part: Some(3),
        });
        assert!(p.render().ends_with(
            "#EXT-X-RENDITION-REPORT:URI=\"../720p/live.m3u8\",LAST-MSN=0,LAST-PART=3\n"
        ));
        p.end();
        assert!(!p.render().contains("RENDITION-REPORT"));
    }

    #[test]
    fn independent_segments_tag() {
        let mut p = MediaPlaylist::new(2, 3);
        p.push_segment("a.ts".into(), 2.0);
        assert!(p.render().contains("#EXT-X-INDEPENDENT-SEGMENTS\n"));
        p.mark_dependent();
        p.push_segment("b.ts".into(), 2.0);
        assert!(!p.render().contains("INDEPENDENT-SEGMENTS"));
        // Once the dependent segment leaves the window, the tag returns.
        for n in ["c.ts", "d.ts", "e.ts"] {
            p.push_segment(n.into(), 2.0);
        }
        assert!(p.render().contains("#EXT-X-INDEPENDENT-SEGMENTS\n"));
    }

    #[test]
    fn program_date_time() {
        let mut t = String::new();
        write_iso8601(&mut t, 1_700_000_000_123);
        assert_eq!(t, "2023-11-14T22:13:20.123Z");
        t.clear();
        write_iso8601(&mut t, 951_782_400_000); // leap day
        assert_eq!(t, "2000-02-29T00:00:00.000Z");
        t.clear();
        write_iso8601(&mut t, -1);
        assert_eq!(t, "1969-12-31T23:59:59.999Z");
        let mut p = MediaPlaylist::new(2, 5);
        p.push_segment_at("a.ts".into(), 2.0, Some(1_700_000_000_123));
        assert!(p.render().contains(
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123Z\n#EXTINF:2.00000,\na.ts\n"
        ));
    }

    #[test]
    fn a_query_goes_on_every_uri() {
        let mut p = MediaPlaylist::new(2, 10);
        p.part_target = Some(0.5);
        p.map_uri = Some("init-1.mp4".into());
        p.push_part("s0.m4s", part("s0.0.m4s", true), Some("s0.1.m4s".into()));
        p.push_segment("s0.m4s".into(), 2.0);
        p.push_part("s1.m4s", part("s1.0.m4s", true), Some("s1.1.m4s".into()));
        p.rendition_reports.push(RenditionReport {
            uri: "../b/media.m3u8".into(),
            last_msn: 1,
            last_part: Some(0),
        });
        let text = p.render_with(false, Some("token=a%2Fb"));
        let uris: alloc::vec::Vec<&str> = text
            .lines()
            .filter_map(|l| {
                if l.starts_with('#') {
                    l.split_once("URI=\"")
                        .map(|(_, r)| &r[..r.find('"').unwrap()])
                } else {
                    Some(l)
                }
            })
            .collect();
        assert_eq!(
            uris,
            [
                "init-1.mp4?token=a%2Fb",
                "s0.0.m4s?token=a%2Fb",
                "s0.m4s?token=a%2Fb",
                "s1.0.m4s?token=a%2Fb",
                "s1.1.m4s?token=a%2Fb",
                "../b/media.m3u8?token=a%2Fb",
            ],
            "{text}"
        );
        // Without a query, the playlist is as before.
        assert_eq!(p.render_with(false, None), p.render());
        assert_eq!(p.render_with(false, Some("")), p.render());
        assert!(matches!(
            p.blocking_request_with(Some(1), Some(0), false, Some("token=t")),
            BlockingAnswer::Ready(b) if b.contains("URI=\"s1.0.m4s?token=t\"")
        ));
    }

    #[test]
    fn delta_update_skips_old_segments() {
        let mut p = MediaPlaylist::new(2, 20);
        p.part_target = Some(0.5);
        for i in 0..10 {
            p.push_segment(format!("s{i}.m4s"), 2.0);
        }
        // 20 s listed, skip boundary 12 s: the first 4 segments go.
        let d = p.render_delta();
        assert!(d.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n"), "{d}");
        assert!(!d.contains("s3.m4s") && d.contains("s4.m4s"));
        assert!(d.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    }
}
