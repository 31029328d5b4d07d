//! SRT's 31-bit packet sequence numbers and 26-bit message numbers, which
//! wrap: every comparison goes through [`Seq::diff`].

/// The largest sequence number (`2^31 - 1`); the next one is 0.
pub const MAX_SEQ: u32 = 0x7FFF_FFFF;

/// A 31-bit packet sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Seq(u32);

impl Seq {
    /// The number `n` (its top bit is dropped).
    pub const fn new(n: u32) -> Self {
        Seq(n & MAX_SEQ)
    }

    /// Its value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The number `n` steps later (or earlier, for negative `n`).
    #[must_use]
    pub const fn add(self, n: i32) -> Self {
        Seq((self.0.wrapping_add(n as u32)) & MAX_SEQ)
    }

    /// The next number.
    #[must_use]
    pub const fn next(self) -> Self {
        self.add(1)
    }

    /// How far `self` lies after `other`: positive if later, negative if
    /// earlier, taking the shorter way round the circle of 2^31.
    pub const fn diff(self, other: Seq) -> i32 {
        let d = self.0.wrapping_sub(other.0) & MAX_SEQ;
        if d > MAX_SEQ / 2 {
            (d as i32) - (MAX_SEQ as i32) - 1
        } else {
            d as i32
        }
    }

    /// Whether `self` comes after `other`.
    pub const fn after(self, other: Seq) -> bool {
        self.diff(other) > 0
    }
}

/// The largest message number (26 bits); message numbers start at 1.
pub const MAX_MSG: u32 = 0x03FF_FFFF;

/// The message number after `n` (1 to [`MAX_MSG`]).
pub const fn next_msg(n: u32) -> u32 {
    if n >= MAX_MSG {
        1
    } else {
        n + 1
    }
}

/// A list of lost sequence ranges, in order, kept short by merging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossList {
    /// Inclusive ranges, ascending (in sequence order from the oldest).
    ranges: std::collections::VecDeque<(Seq, Seq)>,
}

impl LossList {
    /// An empty list.
    pub fn new() -> Self {
        LossList::default()
    }

    /// Whether nothing is lost.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The number of lost packets.
    pub fn len(&self) -> usize {
        self.ranges
            .iter()
            .map(|(a, b)| b.diff(*a) as usize + 1)
            .sum()
    }

    /// The ranges, oldest first.
    pub fn ranges(&self) -> impl Iterator<Item = (Seq, Seq)> + '_ {
        self.ranges.iter().copied()
    }

    /// The oldest lost number.
    pub fn first(&self) -> Option<Seq> {
        self.ranges.front().map(|r| r.0)
    }

    /// Adds `from..=to`, which lies after everything in the list (the
    /// common case: a gap found at the head of what arrived) or anywhere.
    pub fn insert(&mut self, from: Seq, to: Seq) {
        if to.diff(from) < 0 {
            return;
        }
        if let Some(last) = self.ranges.back_mut() {
            if from.diff(last.1) > 0 {
                if from.diff(last.1) == 1 {
                    last.1 = to;
                } else {
                    self.ranges.push_back((from, to));
                }
                return;
            }
        } else {
            self.ranges.push_back((from, to));
            return;
        }
        // Out of order: insert, then merge neighbours.
        let pos = self
            .ranges
            .iter()
            .position(|r| r.0.diff(from) > 0)
            .unwrap_or(self.ranges.len());
        self.ranges.insert(pos, (from, to));
        let mut merged: std::collections::VecDeque<(Seq, Seq)> =
            std::collections::VecDeque::with_capacity(self.ranges.len());
        for r in self.ranges.drain(..) {
            match merged.back_mut() {
                Some(m) if r.0.diff(m.1) <= 1 => {
                    if r.1.diff(m.1) > 0 {
                        m.1 = r.1;
                    }
                }
                _ => merged.push_back(r),
            }
        }
        self.ranges = merged;
    }

    /// Removes one number (it arrived, or was dropped); returns whether it
    /// was in the list.
    pub fn remove(&mut self, s: Seq) -> bool {
        let Some(i) = self
            .ranges
            .iter()
            .position(|(a, b)| s.diff(*a) >= 0 && b.diff(s) >= 0)
        else {
            return false;
        };
        let (a, b) = self.ranges[i];
        match (a == s, b == s) {
            (true, true) => {
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i].0 = s.next(),
            (false, true) => self.ranges[i].1 = s.add(-1),
            (false, false) => {
                self.ranges[i].1 = s.add(-1);
                self.ranges.insert(i + 1, (s.next(), b));
            }
        }
        true
    }

    /// Removes every number before `s`.
    pub fn remove_before(&mut self, s: Seq) {
        while let Some(&(a, b)) = self.ranges.front() {
            if b.diff(s) < 0 {
                self.ranges.pop_front();
            } else {
                if a.diff(s) < 0 {
                    self.ranges[0].0 = s;
                }
                break;
            }
        }
    }

    /// Removes and returns the oldest number.
    pub fn pop_first(&mut self) -> Option<Seq> {
        let s = self.first()?;
        self.remove(s);
        Some(s)
    }

    /// Whether `s` is in the list.
    pub fn contains(&self, s: Seq) -> bool {
        self.ranges
            .iter()
            .any(|(a, b)| s.diff(*a) >= 0 && b.diff(s) >= 0)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_wraps() {
        let a = Seq::new(MAX_SEQ);
        let b = a.next();
        assert_eq!(b.get(), 0);
        assert_eq!(b.diff(a), 1);
        assert_eq!(a.diff(b), -1);
        assert!(b.after(a));
        assert_eq!(Seq::new(5).add(-10).get(), MAX_SEQ - 4);
        assert_eq!(Seq::new(5).diff(Seq::new(5).add(-10)), 10);
        assert_eq!(next_msg(MAX_MSG), 1);
    }

    #[test]
    fn loss_list_merges_and_removes() {
        let mut l = LossList::new();
        l.insert(Seq::new(MAX_SEQ - 1), Seq::new(1));
        assert_eq!(l.len(), 4);
        l.insert(Seq::new(2), Seq::new(3));
        assert_eq!(l.ranges().count(), 1);
        assert!(l.remove(Seq::new(0)));
        assert_eq!(l.ranges().count(), 2);
        assert_eq!(l.len(), 5);
        l.insert(Seq::new(0), Seq::new(0));
        assert_eq!(l.ranges().count(), 1);
        l.remove_before(Seq::new(2));
        assert_eq!(l.first(), Some(Seq::new(2)));
        assert_eq!(l.pop_first(), Some(Seq::new(2)));
        assert_eq!(l.pop_first(), Some(Seq::new(3)));
        assert!(l.is_empty());
        l.insert(Seq::new(10), Seq::new(12));
        l.insert(Seq::new(4), Seq::new(5));
        assert_eq!(l.first(), Some(Seq::new(4)));
        assert!(l.contains(Seq::new(11)));
        assert!(!l.contains(Seq::new(7)));
    }
}
