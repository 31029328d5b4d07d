//! Storage keys: the one rule every adapter's storage backend applies.
//!
//! A key is a relative, `/`-separated path (`live/cam/1700000000/seg3.ts`).
//! Recordings and segments are stored under keys the engine derives from
//! stream names, which come from the network, so a backend must refuse any
//! key that could name something outside its root.

/// Whether `key` is a safe storage key: not empty, relative, no `.` or `..`
/// component, no backslash and no NUL. Empty components (`a//b`) are
/// allowed, as a path join ignores them.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && !key.contains(['\\', '\0'])
        && key.split('/').all(|c| c != "." && c != "..")
        && key.split('/').any(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::valid_key;

    #[test]
    fn keys_cannot_escape() {
        for good in [
            "a",
            "live/cam/seg1.ts",
            "a//b",
            "a/b/",
            "..a/b..",
            "x/.hidden",
        ] {
            assert!(valid_key(good), "{good}");
        }
        for bad in [
            "",
            "/",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a/./b",
            ".",
            "a\\..\\b",
            "a\0b",
            "//",
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }
}
