//! Opening input files: the one place that opens a path, refuses a directory, sniffs the
//! compression from the magic bytes (not the file name) and decompresses.
//!
//! Every reader of the crate starts here: BED files ([`crate::bed::Reader`]), fragment
//! files ([`crate::fragments`]), barcode lists and the TOML config. Line-oriented readers
//! take the decompressed bytes as one [`Text`] stream (plain gzip and BGZF both through
//! flate2's multi-member decoder); the fragment pipeline takes the raw [`Input`] and
//! inflates BGZF blocks itself, several at once, with libdeflate.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::bgzf;
use crate::error::{Error, LineProblem, Result};

/// Bytes read from the file per system call by [`open`].
const BUF_CAPACITY: usize = 1 << 18;

/// The longest line any reader of the crate accepts, in bytes, terminator excluded: BED
/// and universe files, query BED files, fragment files, barcode lists. A longer line is an
/// [`Error::Parse`] ([`LineProblem::TooLong`]) naming the file and line, so that a file
/// without newlines (`/dev/zero`, a binary file) is refused in bounded memory instead of
/// being buffered whole. A `#` comment line may be longer: it is skipped without being
/// held in memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The most (decompressed) bytes [`read_to_string`] reads: a tokenizer config is a few
/// hundred bytes, so anything past this is refused as an [`Error::Parse`].
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How a file's bytes are stored, as its first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (one or more members) that is not BGZF.
    Gzip,
    /// BGZF: gzip members whose headers carry the `BC` block-size subfield.
    Bgzf,
}

impl Compression {
    /// The compression of a file that starts with `head` (at least its first 18 bytes, or
    /// the whole file when shorter, for BGZF to be told from gzip).
    pub fn detect(head: &[u8]) -> Self {
        if bgzf::is_bgzf(head) {
            Compression::Bgzf
        } else if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    pub fn is_compressed(self) -> bool {
        self != Compression::None
    }
}

/// An opened file, not yet decompressed: its buffered raw bytes and their compression.
pub struct Input {
    pub path: PathBuf,
    pub compression: Compression,
    pub raw: BufReader<File>,
}

/// Opens `path` for reading: a missing file is [`Error::NotFound`], a directory is
/// refused with an error naming it, and the compression is read from the first bytes.
pub fn open(path: &Path) -> Result<Input> {
    open_with_capacity(path, BUF_CAPACITY)
}

/// [`open`], reading `capacity` bytes from the file at a time.
pub fn open_with_capacity(path: &Path, capacity: usize) -> Result<Input> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Error::InvalidInput(format!(
            "{}: is a directory, not a file",
            path.display()
        )));
    }
    let mut raw = BufReader::with_capacity(capacity, file);
    let head = raw.fill_buf().map_err(|e| Error::io(path, e))?;
    let compression = Compression::detect(head);
    Ok(Input {
        path: path.to_path_buf(),
        compression,
        raw,
    })
}

impl Input {
    /// The decompressed bytes as one stream.
    pub fn into_text(self) -> Text {
        let reader: Box<dyn BufRead + Send> = if self.compression.is_compressed() {
            Box::new(BufReader::with_capacity(
                BUF_CAPACITY,
                MultiGzDecoder::new(self.raw),
            ))
        } else {
            Box::new(self.raw)
        };
        Text {
            path: self.path,
            compressed: self.compression.is_compressed(),
            reader,
        }
    }
}

/// The decompressed bytes of a file, with what read errors need to name it.
pub struct Text {
    pub path: PathBuf,
    pub compressed: bool,
    pub reader: Box<dyn BufRead + Send>,
}

/// Opens `path` and decompresses it if needed.
pub fn open_text(path: &Path) -> Result<Text> {
    Ok(open(path)?.into_text())
}

/// The error for a failed read after `line` intact lines of `path`: corrupt or truncated
/// data when the file is compressed (the decoder found it), an I/O error otherwise.
pub fn read_error(path: &Path, compressed: bool, line: u64, e: io::Error) -> Error {
    if compressed {
        Error::Compression {
            path: path.to_path_buf(),
            line,
            message: e.to_string(),
        }
    } else {
        Error::io(path, e)
    }
}

/// The whole (decompressed) text of a small file such as a config; bytes that are not
/// UTF-8, or more than [`MAX_CONFIG_BYTES`] of them, are an [`Error::Parse`].
pub fn read_to_string(path: &Path) -> Result<String> {
    let text = open_text(path)?;
    let compressed = text.compressed;
    let mut s = String::new();
    let mut limited = text.reader.take(MAX_CONFIG_BYTES as u64 + 1);
    limited.read_to_string(&mut s).map_err(|e| {
        if !compressed && e.kind() == io::ErrorKind::InvalidData {
            Error::Parse {
                path: path.to_path_buf(),
                line: 0,
                problem: LineProblem::NotUtf8,
            }
        } else {
            read_error(path, compressed, 0, e)
        }
    })?;
    if s.len() > MAX_CONFIG_BYTES {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            line: 1 + s.bytes().filter(|&b| b == b'\n').count() as u64,
            problem: LineProblem::TooLong {
                limit: MAX_CONFIG_BYTES,
                what: "file",
            },
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bgzf_bytes, gzip, temp_file};

    #[test]
    fn sniffs_the_compression_from_the_first_bytes() {
        let text = b"chr1\t1\t2\n";
        assert_eq!(Compression::detect(text), Compression::None);
        assert_eq!(Compression::detect(&gzip(text)), Compression::Gzip);
        assert_eq!(
            Compression::detect(&bgzf_bytes(text, 100)),
            Compression::Bgzf
        );
        assert_eq!(Compression::detect(b""), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        // The name says nothing: a plain file called .gz is plain.
        let f = temp_file("plain.bed.gz", text);
        assert_eq!(open(&f.0).expect("readable").compression, Compression::None);
    }

    #[test]
    fn every_kind_decompresses_to_the_same_text() {
        let text = b"chr1\t1\t2\nchr2\t3\t4\n".repeat(5000);
        for bytes in [text.clone(), gzip(&text), bgzf_bytes(&text, 1000)] {
            let f = temp_file("x.bed.gz", &bytes);
            let mut got = Vec::new();
            open_text(&f.0)
                .expect("readable")
                .reader
                .read_to_end(&mut got)
                .expect("valid");
            assert_eq!(got, text);
        }
    }

    #[test]
    fn refuses_directories_and_names_missing_files() {
        let dir = std::env::temp_dir();
        match open(&dir) {
            Err(Error::InvalidInput(m)) => {
                assert!(m.contains(&dir.display().to_string()) && m.contains("directory"))
            }
            Err(other) => panic!("expected a refusal, got {other:?}"),
            Ok(_) => panic!("expected a refusal, got a file"),
        }
        let missing = dir.join("atacformer-test-no-such-file.bed");
        assert!(matches!(open(&missing), Err(Error::NotFound { path }) if path == missing));
    }

    #[test]
    fn reads_small_text_files_and_names_their_problems() {
        let f = temp_file("config.toml", b"universe = \"u.bed\"\n");
        assert_eq!(
            read_to_string(&f.0).expect("valid"),
            "universe = \"u.bed\"\n"
        );
        let z = temp_file("config.toml", &gzip(b"a = 1\n"));
        assert_eq!(read_to_string(&z.0).expect("valid"), "a = 1\n");
        let bad = temp_file("config.toml", b"a = \"\xff\"\n");
        assert!(matches!(
            read_to_string(&bad.0),
            Err(Error::Parse {
                problem: LineProblem::NotUtf8,
                ..
            })
        ));
        let gz = gzip(b"universe = \"u.bed\"\n");
        let cut = temp_file("config.toml.gz", &gz[..gz.len() - 4]);
        assert!(matches!(
            read_to_string(&cut.0),
            Err(Error::Compression { .. })
        ));
    }
}
