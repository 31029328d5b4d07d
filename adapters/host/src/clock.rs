//! The host clock handed to sessions.

use arcly_core::time::Instant;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maps the system's monotonic clock onto the kernel's [`Instant`]
/// (microseconds since this clock was made), and remembers the wall clock
/// at that origin for token expiry and names.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
    unix_base: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
            unix_base: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// Now, as the kernel counts.
    pub fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Wall-clock Unix seconds at the origin.
    pub fn unix_base(&self) -> u64 {
        self.unix_base
    }

    /// The std instant of a kernel instant.
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.origin + Duration::from_micros(t.as_micros())
    }
}
