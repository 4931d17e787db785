//! Writing files safely: into a uniquely named temporary sibling first (the `tempfile`
//! crate), renamed over the target only when everything was written and synced, so a
//! failure (a full disk, a crash, a concurrent writer) never destroys or tears an existing
//! file. The temporary file is removed on every error path.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Writes through `fill`, gzip-compressed when `path` ends in `.gz`, then renames into place.
/// Any failure is an [`Error::Io`] naming `path`, which then keeps its old contents.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let tmp = temp_sibling(path).map_err(|e| Error::io(path, e))?;
    let result = (|| -> io::Result<()> {
        let file = BufWriter::with_capacity(1 << 18, tmp.as_file());
        if path.extension().is_some_and(|e| e == "gz") {
            let mut gz = GzEncoder::new(file, Compression::default());
            fill(&mut gz)?;
            gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        } else {
            let mut file = file;
            fill(&mut file)?;
            file.into_inner().map_err(|e| e.into_error())?;
        }
        tmp.as_file().sync_all()
    })();
    // Dropping `tmp` (on an error, or a failed rename) removes the temporary file.
    result
        .and_then(|()| tmp.persist(path).map(drop).map_err(|e| e.error))
        .map_err(|e| Error::io(path, e))
}

/// A new, uniquely named empty file `.NAME.XXXXXX.tmp` in the folder of `path`, with the
/// permissions a plain create would give (0666 less the umask).
pub fn temp_sibling(path: &Path) -> io::Result<NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.txt");
        write_atomically(&out, |w| w.write_all(b"old\n")).expect("writable");
        assert_eq!(std::fs::read(&out).expect("written"), b"old\n");
        let err = write_atomically(&out, |w| {
            w.write_all(&vec![b'x'; 1 << 20])?;
            Err(io::Error::other("disk full"))
        })
        .expect_err("the fill fails");
        assert!(err.to_string().contains("out.txt") && err.to_string().contains("disk full"));
        assert_eq!(std::fs::read(&out).expect("kept"), b"old\n");
        assert_eq!(entries(dir.path()), ["out.txt"]);
        // Gzip by the name.
        let gz = dir.path().join("out.bed.gz");
        write_atomically(&gz, |w| w.write_all(b"chr1\t1\t2\n")).expect("writable");
        let mut text = String::new();
        io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(&gz).expect("written")),
            &mut text,
        )
        .expect("gzip");
        assert_eq!(text, "chr1\t1\t2\n");
        // A folder that does not exist is an error naming the file.
        let missing = dir.path().join("no/such/out.txt");
        let err = write_atomically(&missing, |w| w.write_all(b"x")).expect_err("no folder");
        assert!(err.to_string().contains("out.txt"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn temporary_files_are_unique_and_readable_like_plain_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("x.bed");
        let a = temp_sibling(&out).expect("a");
        let b = temp_sibling(&out).expect("b");
        assert_ne!(a.path(), b.path());
        assert!(a
            .path()
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".x.bed.")));
        write_atomically(&out, |w| w.write_all(b"x")).expect("writable");
        let mode = std::fs::metadata(&out)
            .expect("written")
            .permissions()
            .mode();
        assert_ne!(
            mode & 0o044,
            0,
            "readable by others like a plain create: {mode:o}"
        );
    }
}
