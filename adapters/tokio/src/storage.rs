//! A filesystem [`StorageBackend`](crate::StorageBackend): atomic writes,
//! keys confined to a root.

use crate::StorageBackend;
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Objects as files under a root directory. A key is a relative
/// `/`-separated path; keys that could escape the root are refused. Writes go
/// to a temporary file that is renamed into place, so a reader sees the old
/// object or the new one, never a part.
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
    tmp_seq: AtomicU64,
}

impl FsStorage {
    /// Storage under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStorage {
            root: root.into(),
            tmp_seq: AtomicU64::new(0),
        }
    }

    /// The file a key maps to, or an error for a key that could escape.
    pub fn path_of(&self, key: &str) -> io::Result<PathBuf> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid storage key {key:?}"),
            )
        };
        if !arcly_core::storage::valid_key(key) {
            return Err(bad());
        }
        Ok(self.root.join(key))
    }
}

impl StorageBackend for FsStorage {
    async fn put(&self, key: &str, data: Bytes) -> io::Result<()> {
        let path = self.path_of(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        tokio::fs::write(&tmp, &data).await?;
        match tokio::fs::rename(&tmp, &path).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn get(&self, key: &str) -> io::Result<Bytes> {
        Ok(Bytes::from(tokio::fs::read(self.path_of(key)?).await?))
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path_of(key)?).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            while let Some(e) = rd.next_entry().await? {
                let p = e.path();
                if e.file_type().await?.is_dir() {
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

    async fn put_file(&self, key: &str, path: &Path) -> io::Result<()> {
        let dest = self.path_of(key)?;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Same filesystem: a rename is atomic and copies nothing.
        if tokio::fs::rename(path, &dest).await.is_ok() {
            return Ok(());
        }
        let data = tokio::fs::read(path).await?;
        self.put(key, Bytes::from(data)).await?;
        tokio::fs::remove_file(path).await
    }
}
