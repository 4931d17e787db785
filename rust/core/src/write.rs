//! Writing files safely: into a temporary sibling first, renamed over the target only
//! when everything was written, so a failure never destroys an existing file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::error::{Error, Result};

/// Writes through `fill`, gzip-compressed when `path` ends in `.gz`, then renames into place.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| -> io::Result<()> {
        let file = BufWriter::with_capacity(1 << 18, File::create(&tmp)?);
        if path.extension().is_some_and(|e| e == "gz") {
            let mut gz = GzEncoder::new(file, Compression::default());
            fill(&mut gz)?;
            gz.finish()?
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
        } else {
            let mut file = file;
            fill(&mut file)?;
            file.into_inner().map_err(|e| e.into_error())?.sync_all()
        }
    })();
    match result.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(Error::io(path, e))
        }
    }
}

fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}
