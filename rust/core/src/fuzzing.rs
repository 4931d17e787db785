//! Fuzz targets: one function per kind of untrusted input, each taking arbitrary bytes,
//! feeding them to the public API the way a file or a pickle reaches it, and asserting
//! what must hold whatever the bytes are. Compiled only with the `fuzzing` feature.
//!
//! A target never panics on its own for bad input: input the API refuses must be refused
//! with an [`Error`], not a panic, and input it accepts must come out with its invariants
//! intact (regions with `start <= end`, the same records whatever the buffer size or the
//! compression, files that read back as they were written, states that round-trip). A
//! panic here (an `assert!` below or one inside the crate) is a defect.
//!
//! The cargo-fuzz crate in `fuzz/` calls these functions from libFuzzer, and
//! `tests/fuzz_corpus.rs` replays the committed corpus `fuzz/corpus/<target>/` through
//! them on stable Rust, so CI needs no nightly toolchain.
//!
//! Targets that go through a path write the input to a temporary file (one per process,
//! thread and role, overwritten on each call); point `TMPDIR` at a tmpfs for speed.

use std::cell::Cell;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::bed::{self, Line, Reader};
use crate::bgzf::{self, BlockReader};
use crate::config::{Config, SpecialTokens, TokenizerType};
use crate::error::{Error, LineProblem};
use crate::fragments::{tokenize_fragments, FragmentOptions};
use crate::io::{open_text, Compression};
use crate::pad::Truncation;
use crate::ragged::{concat, RaggedRef};
use crate::region_set::RegionSet;
use crate::state;
use crate::tokenizer::Tokenizer;
use crate::universe::Universe;

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 6] = ["bed", "fragments", "gzip", "toml", "atok", "state"];

/// Runs target `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "bed" => bed(data),
        "fragments" => fragments(data),
        "gzip" => gzip(data),
        "toml" => toml(data),
        "atok" => atok(data),
        "state" => state(data),
        _ => return false,
    }
    true
}

/// Most decompressed bytes a target reads, so a small gzip bomb cannot exhaust memory.
const MAX_TEXT: u64 = 16 << 20;

// ------------------------------------------------------------------ temporary files

/// A temporary file path for this process, this thread and `role`; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(role: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local!(static THREAD: Cell<usize> = const { Cell::new(usize::MAX) });
        let thread = THREAD.with(|t| {
            if t.get() == usize::MAX {
                t.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            t.get()
        });
        Scratch(std::env::temp_dir().join(format!(
            "atacformer-fuzz-{}-{thread}-{role}",
            std::process::id()
        )))
    }

    fn with(role: &str, bytes: &[u8]) -> Self {
        let s = Scratch::new(role);
        std::fs::write(&s.0, bytes).expect("the temporary folder is writable");
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn gzip_bytes(text: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text).expect("in memory");
    e.finish().expect("in memory")
}

fn bgzf_bytes(text: &[u8], block: usize) -> Vec<u8> {
    let mut w = bgzf::Writer::with_block_size(Vec::new(), 1, block).expect("valid block size");
    w.write_all(text).expect("in memory");
    w.finish().expect("in memory")
}

/// An error with the file it names replaced by `<file>`, to compare errors about copies
/// of the same text in different files.
fn error_key(e: &Error, path: &Path) -> String {
    format!("{e:?}").replace(&format!("{path:?}"), "<file>")
}

// ------------------------------------------------------------------------------ BED

/// A record with owned fields: line, chrom, start, end, rest.
type Rec = (u64, Vec<u8>, u32, u32, Vec<u8>);

/// Every record of `text` read through a buffer of `capacity` bytes, or the error as
/// `(line, problem)`.
fn bed_records(text: &[u8], capacity: usize) -> Result<Vec<Rec>, (u64, LineProblem)> {
    let mut reader = Reader::from_reader(BufReader::with_capacity(capacity, text), "fuzz.bed");
    let mut out = Vec::new();
    let result = reader.for_each_record(|line, r| {
        out.push((line, r.chrom.to_vec(), r.start, r.end, r.rest.to_vec()));
        Ok(())
    });
    match result {
        Ok(()) => Ok(out),
        Err(Error::Parse { line, problem, .. }) => Err((line, problem)),
        Err(other) => panic!("reading BED from memory failed with {other:?}"),
    }
}

/// What the reader must return, line by line with [`bed::parse_line`] and the header rule
/// of the docs: the oracle for the one-pass path and for lines cut across buffer fills.
fn bed_oracle(text: &[u8]) -> Result<Vec<Rec>, (u64, LineProblem)> {
    let mut out = Vec::new();
    let mut seen_data = false;
    let mut rest = text;
    let mut line_no = 0u64;
    while !rest.is_empty() {
        let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let (mut line, tail) = rest.split_at(len);
        rest = tail;
        line_no += 1;
        if line_no == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        match bed::parse_line(bed::trim_eol(line)) {
            Ok(Line::Skip) => {}
            Ok(Line::Data(r)) => {
                seen_data = true;
                out.push((line_no, r.chrom.to_vec(), r.start, r.end, r.rest.to_vec()));
            }
            Err(LineProblem::NotAnInteger {
                column: "start", ..
            }) if !seen_data => seen_data = true,
            Err(p) => return Err((line_no, p)),
        }
    }
    Ok(out)
}

/// BED text: the line parser and [`Reader`] over bytes in memory (one small buffer size
/// taken from the first byte, and a large one) against the line-by-line oracle; then the
/// same text as a file, plain or gzip (the first byte's top bit), through
/// [`RegionSet::from_bed_with_lines`]; a set read is written with [`RegionSet::to_bed`]
/// (plain or gzip) and must read back as the same set.
pub fn bed(data: &[u8]) {
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let capacity = 1 + usize::from(flags & 0x3f);
    let want = bed_oracle(text);
    let small = bed_records(text, capacity);
    let large = bed_records(text, 1 << 16);
    assert_eq!(small, want, "buffer of {capacity} bytes");
    assert_eq!(large, want, "buffer of 64 KiB");
    if let Ok(recs) = &want {
        let mut last = 0;
        for (line, chrom, start, end, rest) in recs {
            assert!(*line > last, "line numbers increase");
            last = *line;
            assert!(start <= end, "start <= end");
            assert!(!chrom.is_empty() && chrom[0] != b'#');
            assert!(!chrom.iter().any(|&b| b == b'\t' || b == b' '));
            assert!(!rest.starts_with(b"\t") && !rest.starts_with(b" "));
        }
    }

    // As a file. A text that itself starts like gzip is sniffed as gzip: skip it.
    if Compression::detect(text) != Compression::None {
        return;
    }
    let gz = flags & 0x80 != 0;
    let file = if gz {
        Scratch::with("in.bed.gz", &gzip_bytes(text))
    } else {
        Scratch::with("in.bed", text)
    };
    let read = RegionSet::from_bed_with_lines(&file.0);
    let set = match (&want, read) {
        (Ok(recs), Ok((set, lines))) => {
            assert_eq!(set.len(), recs.len());
            for (i, (line, chrom, start, end, rest)) in recs.iter().enumerate() {
                assert_eq!(lines[i], *line);
                assert_eq!(set.chrom(i).as_bytes(), &chrom[..]);
                assert_eq!((set.starts()[i], set.ends()[i]), (*start, *end));
                assert_eq!(set.rest(i).unwrap_or("").as_bytes(), &rest[..]);
            }
            set
        }
        // Names and `rest` must be UTF-8 in a set; the reader alone takes any bytes, so
        // the set stops at the first such record, before any later bad line.
        (
            want,
            Err(Error::Parse {
                line,
                problem: LineProblem::NotUtf8,
                ..
            }),
        ) => {
            assert!(want.as_ref().err().is_none_or(|e| e.0 > line));
            return;
        }
        (
            Err((line, problem)),
            Err(Error::Parse {
                line: l,
                problem: p,
                ..
            }),
        ) => {
            assert_eq!((*line, problem), (l, &p), "a file reads as the bytes do");
            return;
        }
        (want, got) => panic!("in memory {want:?}, from a file {got:?}"),
    };
    let out = Scratch::new(if flags & 0x40 != 0 {
        "out.bed.gz"
    } else {
        "out.bed"
    });
    set.to_bed(&out.0)
        .expect("the temporary folder is writable");
    let back = RegionSet::from_bed(&out.0);
    match back {
        Ok(back) => assert!(
            back.same_regions(&set),
            "to_bed then from_bed changed the set"
        ),
        Err(e) => panic!("to_bed wrote a file that does not read back: {e}"),
    }
}

// ------------------------------------------------------------------------ fragments

/// The universe the fragment and gzip targets tokenize against.
fn fragment_tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let regions = [
            ("chr1", 10, 20),
            ("chr1", 15, 30),
            ("chr1", 0, 5),
            ("chr1", 100, 200),
            ("chr2", 50, 60),
            ("chr1", 7, 7),
            ("chrX", 0, u32::MAX),
            ("c", 1, 2),
        ];
        let chroms: Vec<&str> = regions.iter().map(|r| r.0).collect();
        let starts: Vec<u32> = regions.iter().map(|r| r.1).collect();
        let ends: Vec<u32> = regions.iter().map(|r| r.2).collect();
        let rs = RegionSet::from_columns(&chroms, &starts, &ends).expect("valid regions");
        Tokenizer::new(
            Universe::from_regions(rs).expect("valid universe"),
            SpecialTokens::default(),
            TokenizerType::default(),
        )
        .expect("small universe")
    })
}

/// The options a fuzzed flag byte selects.
fn fragment_options(flags: u8) -> FragmentOptions {
    FragmentOptions {
        barcodes: (flags & 0x80 != 0).then(|| {
            ["A", "AAAC-1", "B", "cell with space", "C"]
                .map(String::from)
                .to_vec()
        }),
        min_fragments: u64::from((flags >> 2) & 3),
        max_fragments: (flags & 0x10 != 0).then_some(u64::from((flags >> 5) & 3)),
        unique: flags & 1 != 0,
        skip_bad_lines: flags & 2 != 0,
        chrom_names: crate::coverage::ChromNames::Auto,
    }
}

/// The output of one run, comparable across files: cells and stats, or the error.
type FragmentOutcome = Result<(crate::Ragged, crate::FragmentStats), String>;

fn run_fragments(path: &Path, opts: &FragmentOptions) -> FragmentOutcome {
    let tok = fragment_tokenizer();
    match tokenize_fragments(tok, path, opts) {
        Ok((cells, stats)) => {
            check_cells(tok, &cells, opts, &stats);
            Ok((cells, stats))
        }
        Err(e) => Err(error_key(&e, path)),
    }
}

/// What holds for any fragment output.
fn check_cells(
    tok: &Tokenizer,
    cells: &crate::Ragged,
    opts: &FragmentOptions,
    stats: &crate::FragmentStats,
) {
    let view = RaggedRef::new(&cells.ids, &cells.offsets).expect("valid offsets");
    assert_eq!(cells.names.len(), view.len(), "one name per cell");
    let vocab = tok.vocab_size() as i32;
    assert!(cells.ids.iter().all(|&id| (0..vocab).contains(&id)));
    let unk = tok.special_id(crate::Special::Unk) as i32;
    let ranks = tok.universe().genomic_order().ranks();
    for i in 0..view.len() {
        let cell = view.cell(i);
        if cell.contains(&unk) {
            assert_eq!(cell, [unk], "[unk] only alone");
            assert!(opts.barcodes.is_some(), "[unk] only for listed barcodes");
        } else if opts.unique {
            assert!(
                cell.windows(2)
                    .all(|w| ranks[w[0] as usize] < ranks[w[1] as usize]),
                "unique ids come in genomic order"
            );
        }
        if opts.barcodes.is_none() {
            assert!(!cell.is_empty(), "cells without tokens are dropped");
        } else if cells.names[i].contains(' ') {
            // No line can name it: a space separates columns.
            assert_eq!(
                cell,
                [unk],
                "listed barcode {:?} got tokens",
                cells.names[i]
            );
        }
    }
    // Columns are separated by tabs or runs of spaces (the module docs and the README), so
    // a barcode never holds either.
    assert!(
        cells
            .names
            .iter()
            .all(|n| !n.is_empty() && !n.contains(['\t', ' ']))
            || opts.barcodes.is_some(),
        "a barcode read from the file holds a separator: {:?}",
        cells.names
    );
    let mut names = cells.names.clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cells.names.len(), "cell names are distinct");
    if let Some(list) = &opts.barcodes {
        let mut at = list.iter();
        for name in &cells.names {
            assert!(at.any(|b| b == name), "listed cells in list order");
        }
    }
    assert!(stats.fragments + stats.skipped_lines <= stats.lines);
    assert_eq!(stats.skipped_lines > 0, stats.first_skipped.is_some());
    if !opts.skip_bad_lines {
        assert_eq!(stats.skipped_lines, 0);
    }
}

/// Fragment files: the first byte picks the options, the second the compression (0: gzip,
/// else BGZF with small blocks below 128 and large ones above); the rest is the text. The
/// text tokenized from a plain file and from the compressed one must give the same cells,
/// counts and errors (lines cut across BGZF blocks included); for an odd second byte, so
/// must the text with spaces in place of its tabs.
pub fn fragments(data: &[u8]) {
    let [flags, packing, text @ ..] = data else {
        return;
    };
    let opts = fragment_options(*flags);
    let (what, packed) = match *packing {
        0 => ("gzip".to_string(), gzip_bytes(text)),
        b => {
            let block = if b < 128 {
                usize::from(b)
            } else {
                usize::from(b - 127) * 500
            };
            (
                format!("BGZF, blocks of {block} bytes"),
                bgzf_bytes(text, block),
            )
        }
    };
    let packed = Scratch::with("frag.tsv.gz", &packed);
    let from_packed = run_fragments(&packed.0, &opts);
    if Compression::detect(text) == Compression::None {
        let plain = Scratch::with("frag.tsv", text);
        let from_plain = run_fragments(&plain.0, &opts);
        assert_eq!(from_plain, from_packed, "plain and {what}");
        // One separator rule: a tab and a space separate columns alike, so spaces in
        // place of every tab must not change the cells, the counts or the errors.
        if packing & 1 == 1 && text.contains(&b'\t') {
            let spaced: Vec<u8> = text
                .iter()
                .map(|&b| if b == b'\t' { b' ' } else { b })
                .collect();
            let spaced = Scratch::with("frag-spaces.tsv", &spaced);
            let from_spaced = run_fragments(&spaced.0, &opts);
            assert_eq!(from_spaced, from_plain, "tabs replaced by spaces");
        }
    }
}

// ----------------------------------------------------------------------- gzip / BGZF

/// Inflates `raw` block by block with [`BlockReader`] and [`bgzf::inflate_block`], as the
/// fragment pipeline does; the text, or the first error.
fn inflate_blocks(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut reader = BlockReader::new(raw);
    let mut d = bgzf::Inflater::new().expect("a decompressor can be allocated");
    let mut blocks = Vec::new();
    let mut out = Vec::new();
    while let Some(span) = reader.read_block(&mut blocks)? {
        assert!(span.data_len <= bgzf::MAX_BLOCK_DATA);
        assert_eq!(span.start + span.len, blocks.len());
        let at = out.len();
        out.resize(at + span.data_len, 0);
        bgzf::inflate_block(
            &mut d,
            &blocks[span.start..span.start + span.len],
            &span,
            &mut out[at..],
        )?;
        blocks.clear();
        if out.len() as u64 > MAX_TEXT {
            break;
        }
    }
    Ok(out)
}

/// Arbitrary bytes as a possibly compressed file: [`open_text`] (which sniffs plain, gzip
/// or BGZF and inflates with flate2), the BGZF block reader with libdeflate, and the
/// fragment pipeline on the raw file. Every reader that succeeds must give the same text.
pub fn gzip(data: &[u8]) {
    let file = Scratch::with("raw.gz", data);
    let mut text = open_text(&file.0).expect("an existing file opens");
    let mut via_flate2 = Vec::new();
    let flate2 = (&mut text.reader)
        .take(MAX_TEXT)
        .read_to_end(&mut via_flate2);
    let kind = Compression::detect(data);
    match (&flate2, kind) {
        (Ok(_), Compression::None) => assert_eq!(via_flate2, data, "plain text as it is"),
        (Err(_), Compression::None) => panic!("reading a plain file failed: {flate2:?}"),
        _ => {}
    }
    if kind == Compression::Bgzf {
        let via_blocks = inflate_blocks(data);
        if let (Ok(_), Ok(b)) = (&flate2, &via_blocks) {
            if (via_flate2.len() as u64) < MAX_TEXT && (b.len() as u64) <= MAX_TEXT {
                assert!(
                    via_flate2 == *b,
                    "flate2 read {} bytes, the BGZF block reader {} bytes",
                    via_flate2.len(),
                    b.len()
                );
            }
        }
    }
    if via_flate2.len() as u64 >= MAX_TEXT {
        return;
    }
    // The fragment pipeline inflates BGZF itself: it must agree with the same text in a
    // plain file whenever it reads the compressed one without an error.
    let opts = fragment_options(0x03);
    let from_raw = run_fragments(&file.0, &opts);
    if kind.is_compressed()
        && flate2.is_ok()
        && Compression::detect(&via_flate2) == Compression::None
    {
        let plain = Scratch::with("raw.txt", &via_flate2);
        let from_plain = run_fragments(&plain.0, &opts);
        // Unless the pipeline skipped a BGZF block that flate2 (which ignores BSIZE) reads.
        // A missing BGZF end-of-file block is only noted.
        if let Some((cells, stats)) = from_raw.ok().filter(|(_, stats)| stats.lost_blocks == 0) {
            let stats = crate::FragmentStats {
                missing_eof: None,
                ..stats
            };
            assert_eq!(
                Ok(&(cells, stats)),
                from_plain.as_ref(),
                "compressed and plain"
            );
        }
    }
}

// ----------------------------------------------------------------------------- TOML

/// A tokenizer config file: [`Config::from_file`] either refuses it with an error naming
/// a line of the file, or gives a config that [`Config::to_toml`] writes back to a file
/// that reads as the same config.
pub fn toml(data: &[u8]) {
    let file = Scratch::with("tokenizer.toml", data);
    let config = match Config::from_file(&file.0) {
        Ok(c) => c,
        Err(Error::Config { line, .. }) if Compression::detect(data) == Compression::None => {
            let lines = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            assert!((1..=lines).contains(&line), "line {line} of {lines}");
            return;
        }
        Err(Error::Config { .. } | Error::Parse { .. } | Error::Compression { .. }) => return,
        Err(e) => panic!("unexpected error for a config: {e:?}"),
    };
    let base = file.0.parent().unwrap_or(Path::new("."));
    let universe = config
        .universe
        .strip_prefix(base)
        .unwrap_or(&config.universe);
    let Some(name) = universe.to_str() else {
        panic!("a universe path from UTF-8 text is UTF-8");
    };
    let text = config.to_toml(name);
    let again = Scratch::with("again.toml", text.as_bytes());
    let back = Config::from_file(&again.0).expect("to_toml writes a valid config");
    assert_eq!(back.universe, config.universe);
    assert_eq!(back.special_tokens, config.special_tokens);
    assert_eq!(back.tokenizer_type, config.tokenizer_type);
}

// ----------------------------------------------------------------------------- .atok

/// Bytes of the fixed `.atok` header: magic, version, n_cells, n_ids, pad, names_bytes.
const ATOK_HEADER: usize = 40;

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A `.atok` file's bytes, laid out as `TokenizedCells.load` reads them (see
/// `python/atacformer/tokenized_cells.py`): a header that must agree with the file size
/// (checked arithmetic: a size field is never trusted), then the offsets and ids through
/// [`RaggedRef::new`], the validation `load` relies on. Offsets it accepts must keep every
/// cell in bounds for `take`, `truncate`, `pad` and `concat`, which are checked against
/// plain slices. Magic and version are not checked, so fuzzing reaches the offsets.
pub fn atok(data: &[u8]) {
    if data.len() < ATOK_HEADER {
        return;
    }
    let n = le_u64(data, 8);
    let n_ids = le_u64(data, 16);
    let names_bytes = le_u64(data, 32);
    let layout = (|| {
        let offsets_len = usize::try_from(n).ok()?.checked_add(1)?;
        let ids_at = offsets_len.checked_mul(8)?.checked_add(ATOK_HEADER)?;
        let n_ids = usize::try_from(n_ids).ok()?;
        let ids_bytes = n_ids.checked_mul(4)?;
        let names_at = ids_at.checked_add(ids_bytes)?.checked_add(ids_bytes % 8)?;
        let end = names_at.checked_add(usize::try_from(names_bytes).ok()?)?;
        (end == data.len()).then_some((offsets_len, ids_at, n_ids, names_at))
    })();
    let Some((offsets_len, ids_at, n_ids, names_at)) = layout else {
        return;
    };
    let offsets: Vec<i64> = data[ATOK_HEADER..ids_at]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let ids: Vec<i32> = data[ids_at..ids_at + 4 * n_ids]
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(offsets.len(), offsets_len);
    let Ok(view) = RaggedRef::new(&ids, &offsets) else {
        return;
    };
    // Accepted: every range is in bounds and the cells tile the ids.
    assert_eq!(offsets[0], 0);
    assert_eq!(*offsets.last().expect("non-empty"), n_ids as i64);
    let cells: Vec<&[i32]> = (0..view.len()).map(|i| view.cell(i)).collect();
    assert_eq!(cells.iter().map(|c| c.len()).sum::<usize>(), n_ids);
    assert_eq!(
        view.lengths(),
        cells.iter().map(|c| c.len() as i64).collect::<Vec<_>>()
    );
    let names = &data[names_at..];
    let _ = std::str::from_utf8(names);

    // take: indices from the names bytes, negative ones counting from the end.
    let k = cells.len() as i64;
    let picks: Vec<i64> = names.iter().take(16).map(|&b| i64::from(b as i8)).collect();
    match view.take(&picks) {
        Ok(t) => {
            assert!(picks.iter().all(|&i| -k <= i && i < k));
            assert_eq!(t.len(), picks.len());
            for (j, &i) in picks.iter().enumerate() {
                let c = if i < 0 { i + k } else { i } as usize;
                assert_eq!(t.cell(j), cells[c]);
            }
        }
        Err(_) => assert!(picks.iter().any(|&i| i < -k || i >= k)),
    }
    assert!(view.take(&[i64::MIN]).is_err() && view.take(&[i64::MAX]).is_err());

    // truncate and pad, against slices.
    let width = names.first().map_or(3, |&b| usize::from(b % 9));
    let seed = u64::from(names.get(1).copied().unwrap_or(7));
    for how in [Truncation::First, Truncation::Random { seed }] {
        let cut = view.truncate(width, how);
        assert_eq!(cut.len(), cells.len());
        for (i, c) in cells.iter().enumerate() {
            let got = cut.cell(i);
            assert_eq!(got.len(), c.len().min(width));
            match how {
                Truncation::First => assert_eq!(got, &c[..got.len()]),
                Truncation::Random { .. } => {
                    // A subsequence of the cell, in order.
                    let mut it = c.iter();
                    assert!(got.iter().all(|x| it.any(|y| y == x)));
                }
            }
        }
        let (rows, mask) = view.pad(width, -1, how).expect("a small batch");
        assert_eq!(rows.len(), cells.len() * width);
        assert_eq!(mask.len(), rows.len());
        for i in 0..cells.len() {
            let row = &rows[i * width..(i + 1) * width];
            let m = &mask[i * width..(i + 1) * width];
            let real = cut.cell(i);
            assert!(row[..real.len()]
                .iter()
                .zip(real)
                .all(|(&a, &b)| a == i64::from(b)));
            assert!(row[real.len()..].iter().all(|&x| x == -1));
            assert!(m
                .iter()
                .enumerate()
                .all(|(j, &x)| x == i64::from(j < real.len())));
        }
    }
    assert_eq!(
        view.pad(usize::MAX, 0, Truncation::First).is_err(),
        !cells.is_empty()
    );

    let both = concat(&[view, view]).expect("small");
    assert_eq!(both.len(), 2 * cells.len());
    for (i, c) in cells.iter().enumerate() {
        assert_eq!(both.cell(i), *c);
        assert_eq!(both.cell(i + cells.len()), *c);
    }
}

// ---------------------------------------------------------------------------- state

/// The bytes a tokenizer is pickled as: [`state::from_bytes`] refuses them with an error
/// or rebuilds a tokenizer whose state round-trips exactly, whose ids and token strings
/// map to each other, and which finds each of its own regions.
pub fn state(data: &[u8]) {
    let Ok(tok) = state::from_bytes(data) else {
        return;
    };
    let bytes = state::to_bytes(&tok);
    let again = state::from_bytes(&bytes).expect("to_bytes output loads");
    assert_eq!(again, tok, "state round trip");
    assert_eq!(state::to_bytes(&again), bytes, "state bytes are stable");

    let n = tok.universe().len();
    assert_eq!(tok.vocab_size(), n + crate::SPECIAL_NAMES.len());
    for id in 0..tok.vocab_size() as u32 {
        let token = tok.id_to_token(id).expect("every id has a token");
        assert_eq!(
            tok.token_to_id(&token),
            Some(id),
            "token {token:?} of id {id}"
        );
    }
    assert!(tok.id_to_token(tok.vocab_size() as u32).is_none());
    let regions = tok.universe().regions();
    let ids: Vec<u32> = tok.tokenize_set(regions);
    for i in 0..n {
        if regions.starts()[i] < regions.ends()[i] {
            assert!(ids.contains(&(i as u32)), "region {i} overlaps itself");
        }
    }
}
