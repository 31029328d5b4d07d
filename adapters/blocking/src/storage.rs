//! The filesystem storage backend: `arcly_host::FsStore`'s blocking calls as
//! they are.

use crate::StorageBackend;
use bytes::Bytes;
use std::io;
use std::path::Path;

/// Objects as files under a root; keys that could escape it are refused;
/// writes are temp-file-then-rename, so readers never see a partial object.
pub use arcly_host::FsStore as FsStorage;

impl StorageBackend for FsStorage {
    fn put(&self, key: &str, data: Bytes) -> io::Result<()> {
        FsStorage::put(self, key, &data)
    }

    fn get(&self, key: &str) -> io::Result<Bytes> {
        FsStorage::get(self, key)
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        FsStorage::delete(self, key)
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        FsStorage::list(self, prefix)
    }

    fn put_file(&self, key: &str, path: &Path) -> io::Result<()> {
        FsStorage::put_file(self, key, path)
    }
}
