//! A filesystem [`StorageBackend`](crate::StorageBackend): `arcly_host::FsStore`'s
//! calls (atomic writes, keys confined to a root) on tokio's blocking pool.

use crate::StorageBackend;
use arcly_host::FsStore;
use bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};

/// Objects as files under a root directory. A key is a relative
/// `/`-separated path; keys that could escape the root are refused. Writes go
/// to a temporary file that is renamed into place, so a reader sees the old
/// object or the new one, never a part.
#[derive(Clone, Debug)]
pub struct FsStorage {
    store: FsStore,
}

impl FsStorage {
    /// Storage under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStorage {
            store: FsStore::new(root),
        }
    }

    /// The file a key maps to, or an error for a key that could escape.
    pub fn path_of(&self, key: &str) -> io::Result<PathBuf> {
        self.store.path_of(key)
    }

    async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&FsStore) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let store = self.store.clone();
        let f = move || call(&store);
        tokio::task::spawn_blocking(f)
            .await
            .map_err(io::Error::other)?
    }
}

impl StorageBackend for FsStorage {
    async fn put(&self, key: &str, data: Bytes) -> io::Result<()> {
        let key = key.to_string();
        self.run(move |s| s.put(&key, &data)).await
    }

    async fn get(&self, key: &str) -> io::Result<Bytes> {
        let key = key.to_string();
        self.run(move |s| s.get(&key)).await
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let key = key.to_string();
        self.run(move |s| s.delete(&key)).await
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let prefix = prefix.to_string();
        self.run(move |s| s.list(&prefix)).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> io::Result<()> {
        let (key, path) = (key.to_string(), path.to_path_buf());
        self.run(move |s| s.put_file(&key, &path)).await
    }
}
