//! A filesystem storage backend on smol's blocking pool.

use crate::StorageBackend;
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Objects as files under a root; keys that could escape it are refused;
/// writes are temp-file-then-rename, so readers never see a partial object.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: Arc<PathBuf>,
    tmp_seq: Arc<AtomicU64>,
}

impl FsStorage {
    /// Storage under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStorage {
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
}

fn put_blocking(path: &Path, tmp: &Path, data: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(tmp, data)?;
    std::fs::rename(tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(tmp);
    })
}

impl StorageBackend for FsStorage {
    async fn put(&self, key: &str, data: Bytes) -> io::Result<()> {
        let path = self.path_of(key)?;
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        smol::unblock(move || put_blocking(&path, &tmp, &data)).await
    }

    async fn get(&self, key: &str) -> io::Result<Bytes> {
        let path = self.path_of(key)?;
        smol::unblock(move || std::fs::read(path).map(Bytes::from)).await
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let path = self.path_of(key)?;
        smol::unblock(move || match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        })
        .await
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        smol::unblock(move || {
            let mut out = Vec::new();
            let mut stack = vec![(*root).clone()];
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
                    } else if let Ok(rel) = p.strip_prefix(&*root) {
                        let key = rel.to_string_lossy().replace('\\', "/");
                        if key.starts_with(&prefix) && !key.contains(".tmp") {
                            out.push(key);
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn put_file(&self, key: &str, path: &Path) -> io::Result<()> {
        let dest = self.path_of(key)?;
        let src = path.to_path_buf();
        smol::unblock(move || {
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            if std::fs::rename(&src, &dest).is_ok() {
                return Ok(());
            }
            std::fs::copy(&src, &dest)?;
            std::fs::remove_file(&src)
        })
        .await
    }
}
