//! Blobs on the local filesystem: `blobs/sha256/<2 hex>/<64 hex>`, written through `tmp/` and renamed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Digest, StoreError};

pub(crate) struct FsBlobs {
    blob_dir: PathBuf,
    tmp_dir: PathBuf,
}

/// A file being filled with a download. Dropped without being committed, it is deleted: a failed or
/// cancelled download never leaves anything behind that could later be served.
pub struct TempBlob {
    path: PathBuf,
    file: Option<File>,
}

/// A committed blob opened for reading.
pub struct BlobFile {
    pub file: File,
    pub len: u64,
}

impl TempBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, open for writing.
    pub fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("a TempBlob holds its file until commit or drop")
    }

    /// A second handle on the same file for positional reads (`read_at`) by clients that stream the
    /// download while it is written. It stays valid after commit (rename) and after deletion.
    pub fn reader(&self) -> std::io::Result<File> {
        File::open(&self.path)
    }

    /// Appends `bytes` (blocking).
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.write_all(bytes),
            None => Err(std::io::Error::other("temporary blob already committed")),
        }
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl FsBlobs {
    pub(crate) fn new(root: &Path) -> Result<FsBlobs, StoreError> {
        let blob_dir = root.join("blobs").join("sha256");
        let tmp_dir = root.join("tmp");
        fs::create_dir_all(&blob_dir).map_err(|e| StoreError::io(&blob_dir, "create", e))?;
        // Leftovers of a crash or kill -9: never committed, so never served; remove them.
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(|e| StoreError::io(&tmp_dir, "clean", e))?;
        }
        fs::create_dir_all(&tmp_dir).map_err(|e| StoreError::io(&tmp_dir, "create", e))?;
        Ok(FsBlobs { blob_dir, tmp_dir })
    }

    pub(crate) fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.blob_dir.join(&hex[..2]).join(hex)
    }

    pub(crate) fn temp(&self) -> Result<TempBlob, StoreError> {
        let name = format!("{:016x}.part", rand::random::<u64>());
        let path = self.tmp_dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, "create temporary file", e))?;
        Ok(TempBlob {
            path,
            file: Some(file),
        })
    }

    pub(crate) fn commit(&self, mut temp: TempBlob, digest: &Digest) -> Result<(), StoreError> {
        let final_path = self.path_of(digest);
        let file = temp
            .file
            .take()
            .expect("a TempBlob holds its file until commit or drop");
        let tmp_path = temp.path.clone();
        let result = (|| {
            file.sync_all()
                .map_err(|e| StoreError::io(&tmp_path, "sync", e))?;
            drop(file);
            if final_path.exists() {
                return fs::remove_file(&tmp_path)
                    .map_err(|e| StoreError::io(&tmp_path, "remove", e));
            }
            let dir = final_path.parent().expect("blob paths have a parent");
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, "create", e))?;
            fs::rename(&tmp_path, &final_path)
                .map_err(|e| StoreError::io(&final_path, "rename into", e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io(dir, "sync", e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        result
    }

    pub(crate) fn open(&self, digest: &Digest) -> Result<Option<BlobFile>, StoreError> {
        let path = self.path_of(digest);
        match File::open(&path) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(|e| StoreError::io(&path, "stat", e))?
                    .len();
                Ok(Some(BlobFile { file, len }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, "open", e)),
        }
    }

    pub(crate) fn exists(&self, digest: &Digest) -> bool {
        self.path_of(digest).is_file()
    }

    pub(crate) fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.path_of(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&path, "delete", e)),
        }
    }

    pub(crate) fn probe(&self) -> Result<(), StoreError> {
        let mut temp = self.temp()?;
        let path = temp.path.clone();
        temp.write_all(b"probe")
            .map_err(|e| StoreError::io(&path, "write", e))?;
        Ok(())
    }
}
