//! Time, as the host supplies it, and media time, as the streams carry it.
//!
//! Two kinds of time never mix here:
//!
//! * [`Instant`] is the host's monotonic clock in microseconds. The kernel never
//!   reads a clock: every `handle_*` call takes `now: Instant` from the adapter,
//!   which makes every state machine deterministic under test.
//! * [`MediaTime`] is a presentation or decode time stamp: a tick count and the
//!   timescale it counts in (90 kHz for video, the sample rate for audio,
//!   1 kHz for RTMP). Tick counts are 64-bit, so the 32-bit RTMP and RTP clocks
//!   and the 33-bit MPEG-TS clock are first extended with a [`WrapExtender`] and
//!   then never wrap again.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on the host's monotonic clock, in microseconds since an origin the
/// host chooses (usually when it started).
///
/// The kernel compares and subtracts instants; it never asks what time it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the host's clock.
    pub const ZERO: Instant = Instant(0);

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this instant is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// This instant plus `d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Instant {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Ticks per second of a media clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timescale(u32);

impl Timescale {
    /// 1 kHz: RTMP and FLV time stamps.
    pub const MILLIS: Timescale = Timescale(1_000);
    /// 90 kHz: MPEG-TS and RTP video.
    pub const MPEG: Timescale = Timescale(90_000);
    /// 1 MHz.
    pub const MICROS: Timescale = Timescale(1_000_000);

    /// A timescale of `hz` ticks per second; `None` for zero.
    pub const fn new(hz: u32) -> Option<Self> {
        if hz == 0 {
            None
        } else {
            Some(Timescale(hz))
        }
    }

    /// Ticks per second.
    pub const fn hz(self) -> u32 {
        self.0
    }
}

/// Rescales `ticks` from one timescale to another, rounding to nearest (ties
/// away from zero). Computed in 128 bits, so it neither overflows nor drifts:
/// rescaling the absolute time of every frame gives the same answer as
/// rescaling the first and adding rescaled durations would only approximate.
pub fn rescale(ticks: i64, from: Timescale, to: Timescale) -> i64 {
    if from == to {
        return ticks;
    }
    let num = i128::from(ticks) * i128::from(to.0);
    let den = i128::from(from.0);
    let half = den / 2;
    let q = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    // A rescale to a finer clock can exceed i64 only for times beyond
    // ~3 million years at 90 kHz; saturate rather than wrap.
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

/// A media time stamp: `ticks` counted in `timescale`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaTime {
    /// Ticks since the stream's origin (may be negative before it).
    pub ticks: i64,
    /// What one second is in ticks.
    pub timescale: Timescale,
}

impl MediaTime {
    /// `ticks` in `timescale`.
    pub const fn new(ticks: i64, timescale: Timescale) -> Self {
        MediaTime { ticks, timescale }
    }

    /// A time in milliseconds (the RTMP clock).
    pub const fn from_millis(ms: i64) -> Self {
        MediaTime::new(ms, Timescale::MILLIS)
    }

    /// The same time in another timescale (rounded to nearest).
    pub fn rescale(self, to: Timescale) -> MediaTime {
        MediaTime::new(rescale(self.ticks, self.timescale, to), to)
    }

    /// This time in whole milliseconds (rounded to nearest).
    pub fn as_millis(self) -> i64 {
        rescale(self.ticks, self.timescale, Timescale::MILLIS)
    }

    /// This time in microseconds (rounded to nearest).
    pub fn as_micros(self) -> i64 {
        rescale(self.ticks, self.timescale, Timescale::MICROS)
    }

    /// `self - other` in this time stamp's timescale.
    pub fn ticks_since(self, other: MediaTime) -> i64 {
        self.ticks
            .saturating_sub(rescale(other.ticks, other.timescale, self.timescale))
    }
}

impl PartialOrd for MediaTime {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MediaTime {
    /// Compares the instants the two stamps denote, exactly, whatever their
    /// timescales.
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        let a = i128::from(self.ticks) * i128::from(other.timescale.0);
        let b = i128::from(other.ticks) * i128::from(self.timescale.0);
        a.cmp(&b)
    }
}

impl fmt::Debug for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ticks, self.timescale.0)
    }
}

/// Extends a wrapping `BITS`-bit clock (32 for RTMP and RTP, 33 for MPEG-TS)
/// into a monotonic-by-construction 64-bit count.
///
/// Each raw value is placed at the position nearest to the previous one, so a
/// wrap from `2^BITS - 1` to `0` moves forward by one tick, and a small step
/// backwards (B-frame reordering, a jittery encoder) stays a small step
/// backwards instead of a jump of `2^BITS`.
#[derive(Clone, Debug, Default)]
pub struct WrapExtender<const BITS: u32> {
    last: Option<i64>,
}

/// The 32-bit clock of RTMP message headers and RTP packets.
pub type Wrap32 = WrapExtender<32>;
/// The 33-bit clock of MPEG-TS PTS, DTS and PCR base.
pub type Wrap33 = WrapExtender<33>;

impl<const BITS: u32> WrapExtender<BITS> {
    const MODULUS: i64 = 1i64 << BITS;
    const MASK: u64 = (1u64 << BITS) - 1;

    /// An extender that has seen nothing yet: the first value is taken as is.
    pub const fn new() -> Self {
        WrapExtender { last: None }
    }

    /// The extended value of `raw` (only its low `BITS` bits are read).
    pub fn extend(&mut self, raw: u64) -> i64 {
        // `raw & MASK` has at most 33 bits, so it always fits an i64.
        let raw = (raw & Self::MASK) as i64;
        let out = match self.last {
            None => raw,
            Some(last) => {
                let mut delta = (raw - last).rem_euclid(Self::MODULUS);
                if delta >= Self::MODULUS / 2 {
                    delta -= Self::MODULUS;
                }
                last.saturating_add(delta)
            }
        };
        self.last = Some(out);
        out
    }

    /// The last extended value, if any.
    pub fn last(&self) -> Option<i64> {
        self.last
    }
}

/// Unix time in milliseconds, written as an RFC 3339 UTC date-time:
/// `2023-11-14T22:13:20.123Z` with `millis`, `2023-11-14T22:13:20Z`
/// without (days to the civil date after H. Hinnant's `civil_from_days`).
/// For playlists' `EXT-X-PROGRAM-DATE-TIME` and hosts' log stamps alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcTime {
    /// Milliseconds since 1970-01-01T00:00:00Z (negative before).
    pub unix_ms: i64,
    /// Whether to write the milliseconds.
    pub millis: bool,
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.unix_ms.div_euclid(86_400_000);
        let in_day = self.unix_ms.rem_euclid(86_400_000);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1000 % 60,
        )?;
        if self.millis {
            write!(f, ".{:03}", in_day % 1000)?;
        }
        f.write_str("Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wrap32_crosses_boundary_forward() {
        let mut w = Wrap32::new();
        assert_eq!(w.extend(0xFFFF_FFF0), 0xFFFF_FFF0);
        assert_eq!(w.extend(0x0000_0010), 0x1_0000_0010);
        assert_eq!(w.extend(0x0000_0400), 0x1_0000_0400);
        // B-frame style step back across the boundary again.
        assert_eq!(w.extend(0xFFFF_FFFF), 0xFFFF_FFFF);
        assert_eq!(w.extend(0x20), 0x1_0000_0020);
    }

    #[test]
    fn wrap33_crosses_boundary_twice() {
        let mut w = Wrap33::new();
        let m = 1i64 << 33;
        let mut t = m - 90_000; // one second before the wrap at 90 kHz
        assert_eq!(w.extend(t as u64), t);
        while t < 2 * m + 1_000_000 {
            // step 3 s at a time through two full wraps
            t += 270_000;
            assert_eq!(w.extend((t as u64) & ((1 << 33) - 1)), t);
        }
        assert!(t > 2 * m);
    }

    #[test]
    fn rescale_rounds_and_is_exact_for_multiples() {
        assert_eq!(rescale(1, Timescale::MILLIS, Timescale::MPEG), 90);
        assert_eq!(rescale(90, Timescale::MPEG, Timescale::MILLIS), 1);
        assert_eq!(rescale(45, Timescale::MPEG, Timescale::MILLIS), 1);
        assert_eq!(rescale(44, Timescale::MPEG, Timescale::MILLIS), 0);
        assert_eq!(rescale(-45, Timescale::MPEG, Timescale::MILLIS), -1);
        let t48 = Timescale::new(48_000).unwrap();
        // 1024-sample AAC frames: 1000 frames in 48 kHz = 21333.33 ms
        assert_eq!(rescale(1024 * 1000, t48, Timescale::MILLIS), 21_333);
    }

    #[test]
    fn media_time_orders_across_timescales() {
        let a = MediaTime::new(90_000, Timescale::MPEG);
        let b = MediaTime::from_millis(1000);
        assert_eq!(a.cmp(&b), core::cmp::Ordering::Equal);
        assert!(MediaTime::from_millis(1001) > a);
        assert_eq!(a.ticks_since(MediaTime::from_millis(500)), 45_000);
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let a = Instant::from_millis(5);
        assert_eq!(a - Instant::from_millis(7), Duration::ZERO);
        assert_eq!(Instant::from_millis(7) - a, Duration::from_millis(2));
        assert_eq!(
            Instant::from_micros(u64::MAX) + Duration::from_secs(1),
            Instant::from_micros(u64::MAX)
        );
    }

    proptest! {
        /// A clock that advances by less than half its range per step is
        /// extended to exactly the unwrapped sequence, from any start.
        #[test]
        fn wrap32_extends_exactly(start in 0u64..(1 << 32), steps in proptest::collection::vec(-100_000i64..(1 << 30), 1..200)) {
            let mut w = Wrap32::new();
            let mut t = start as i64;
            prop_assert_eq!(w.extend(start), t);
            for s in steps {
                t += s;
                prop_assert_eq!(w.extend(t.rem_euclid(1 << 32) as u64), t);
            }
        }

        #[test]
        fn wrap33_extends_exactly(start in 0u64..(1 << 33), steps in proptest::collection::vec(-100_000i64..(1 << 31), 1..200)) {
            let mut w = Wrap33::new();
            let mut t = start as i64;
            prop_assert_eq!(w.extend(start), t);
            for s in steps {
                t += s;
                prop_assert_eq!(w.extend(t.rem_euclid(1 << 33) as u64), t);
            }
        }

        /// Rescaling absolute times never drifts: the n-th AAC frame's time in
        /// 90 kHz is within half a tick of the exact value.
        #[test]
        fn rescale_has_no_drift(n in 0i64..10_000_000, hz in prop::sample::select(vec![8000u32, 44_100, 48_000, 96_000])) {
            let from = Timescale::new(hz).unwrap();
            let got = rescale(n * 1024, from, Timescale::MPEG);
            let exact = (n as f64) * 1024.0 * 90_000.0 / hz as f64;
            prop_assert!((got as f64 - exact).abs() <= 0.5 + 1e-6);
        }
    }
}
