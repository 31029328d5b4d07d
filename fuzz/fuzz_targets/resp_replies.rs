//! Arbitrary bytes as a Redis server's replies, split at arbitrary points,
//! to the reply reader and to the directory client waiting on them: never
//! a panic, never more held than the limit, never a reply that took more
//! bytes than it was given.
#![no_main]

use arcly_core::time::Instant;
use arcly_resp::directory::{Directory, DirectoryConfig};
use arcly_resp::{parse, Limits, Replies};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_buffered: 4096,
        ..Limits::default()
    };
    if let Ok(Some((_, n))) = parse(data, &limits) {
        assert!(n <= data.len());
    }
    let cut = 1 + usize::from(data.first().copied().unwrap_or(0)) % 17;
    let mut replies = Replies::new(limits);
    let mut dir = Directory::new("rtmp://127.0.0.1:1935", DirectoryConfig::default());
    dir.published("live/a", Instant::ZERO);
    for i in 0..4 {
        dir.lookup(&format!("live/k{i}"));
    }
    for chunk in data.chunks(cut) {
        if replies.push(chunk).is_err() {
            return;
        }
        loop {
            match replies.next_reply() {
                Ok(Some(r)) => {
                    let _ = dir.handle_reply(r);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = dir.reconnected(Instant::from_millis(1));
    while dir.poll_transmit().is_some() {}
});
