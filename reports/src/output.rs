//! Atomic file writes: a temporary file beside the target, synced, then renamed over it, so a
//! reader (or a browser left open on the report) never sees a half-written file.

use std::io::{self, Write};
use std::path::Path;

use crate::error::ReportError;

/// Writes `bytes` to `path` atomically; the error names the file (`writing <path>: <cause>`) and
/// keeps the cause's kind. The harness writes its own files (results.json, the flush mark) with it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Writes `bytes` to `path` atomically, for this crate's outputs.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    replace(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_owned(),
        source,
    })
}

/// A temporary file beside `path`, synced, renamed over it; removed again if that fails.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/folder/a.txt");
        let err = write(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("a.txt"), "{err}");
    }

    #[test]
    fn a_failed_atomic_write_names_its_path_and_keeps_the_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/results.json");
        let err = write_atomically(&path, b"{}").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with(&format!("writing {}: ", path.display())),
            "{err}"
        );
    }
}
