//! A filesystem storage backend with std::fs.

use crate::StorageBackend;
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Objects as files under a root; keys that could escape it are refused;
/// writes are temp-file-then-rename, so readers never see a partial object.
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
    tmp_seq: AtomicU64,
}

impl FsStorage {
    /// Storage under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStorage {
            root: root.into(),
            tmp_seq: AtomicU64::new(0),
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
}

impl StorageBackend for FsStorage {
    fn put(&self, key: &str, data: Bytes) -> io::Result<()> {
        let path = self.path_of(key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, &data)?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    fn get(&self, key: &str) -> io::Result<Bytes> {
        std::fs::read(self.path_of(key)?).map(Bytes::from)
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path_of(key)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
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
                } else if let Ok(rel) = p.strip_prefix(&self.root) {
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

    fn put_file(&self, key: &str, path: &Path) -> io::Result<()> {
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
        let dir = std::env::temp_dir().join(format!("arcly-fs-{}", std::process::id()));
        let s = FsStorage::new(&dir);
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "a\\b", "./a"] {
            assert!(s.put(bad, Bytes::from_static(b"x")).is_err(), "{bad:?}");
        }
        s.put("live/cam/seg1.m4s", Bytes::from_static(b"one"))
            .unwrap();
        s.put("live/cam/seg1.m4s", Bytes::from_static(b"two"))
            .unwrap();
        s.put("live/other/a", Bytes::from_static(b"3")).unwrap();
        assert_eq!(&s.get("live/cam/seg1.m4s").unwrap()[..], b"two");
        assert_eq!(s.list("live/cam").unwrap(), vec!["live/cam/seg1.m4s"]);
        s.delete("live/cam/seg1.m4s").unwrap();
        s.delete("live/cam/seg1.m4s").unwrap();
        assert!(s.get("live/cam/seg1.m4s").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
