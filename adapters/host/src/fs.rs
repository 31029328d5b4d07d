//! Objects as files under a root: atomic writes, keys confined to the root.

use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Objects as files under a root directory, with blocking `std::fs` calls.
/// A key is a relative `/`-separated path; keys that could escape the root
/// are refused (`arcly_core::storage::valid_key`). Writes go to a temporary
/// file that is renamed into place, so a reader sees the old object or the
/// new one, never a part. Cheap to clone (for a runtime's blocking pool).
#[derive(Clone, Debug)]
pub struct FsStore {
    root: Arc<PathBuf>,
    tmp_seq: Arc<AtomicU64>,
}

impl FsStore {
    /// Storage under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStore {
            root: Arc::new(root.into()),
            tmp_seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The file a key maps to, or an error for a key that could escape.
    pub fn path_of(&self, key: &str) -> io::Result<PathBuf> {
        if !arcly_core::storage::valid_key(key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid storage key {key:?}"),
            ));
        }
        Ok(self.root.join(key))
    }

    /// Stores `data` under `key`, atomically.
    pub fn put(&self, key: &str, data: &[u8]) -> io::Result<()> {
        let path = self.path_of(key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// The object under `key`.
    pub fn get(&self, key: &str) -> io::Result<Bytes> {
        std::fs::read(self.path_of(key)?).map(Bytes::from)
    }

    /// Removes `key`; a missing key is not an error.
    pub fn delete(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path_of(key)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Every key starting with `prefix`, sorted (writes in progress are not
    /// listed).
    pub fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(*self.root).clone()];
        while let Some(dir) = stack.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&*self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) && !key.contains(".tmp") {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Moves the file at `path` to `key` (copies it across filesystems).
    pub fn put_file(&self, key: &str, path: &Path) -> io::Result<()> {
        let dest = self.path_of(key)?;
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if std::fs::rename(path, &dest).is_ok() {
            return Ok(());
        }
        std::fs::copy(path, &dest)?;
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_and_writes_are_whole() {
        let dir = std::env::temp_dir().join(format!("arcly-host-fs-{}", std::process::id()));
        let s = FsStore::new(&dir);
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "a\\b", "./a"] {
            assert!(s.put(bad, b"x").is_err(), "{bad:?}");
        }
        s.put("live/cam/seg0.m4s", b"one").expect("put");
        s.put("live/cam/seg0.m4s", b"two").expect("overwrite");
        assert_eq!(&s.get("live/cam/seg0.m4s").expect("get")[..], b"two");
        assert_eq!(s.list("live/").expect("list"), vec!["live/cam/seg0.m4s"]);
        s.delete("live/cam/seg0.m4s").expect("delete");
        s.delete("live/cam/seg0.m4s").expect("delete again");
        assert!(s.list("").expect("list").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
