//! End-to-end tests of fragment tokenization: every encoding under every chunking, against
//! hand-checked cells and a brute-force oracle.

use std::path::PathBuf;

use super::pipeline::{run, Tuning};
use super::*;
use crate::bgzf;
use crate::error::Error;
use crate::testing::{bgzf_bytes, gzip, temp_file};
use crate::testing::{tokenizer, Rng};
use crate::tokenizer::Special;
use crate::universe::GenomicOrder;

/// The file as plain text, gzip, BGZF, and BGZF with tiny blocks.
fn encodings(text: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("plain", text.to_vec()),
        ("gzip", gzip(text)),
        ("bgzf", bgzf_bytes(text, bgzf::WRITE_BLOCK_DATA)),
        ("bgzf-tiny", bgzf_bytes(text, 23)),
    ]
}

const TUNINGS: [Tuning; 4] = [
    Tuning {
        chunk_bytes: 1 << 20,
        chunks_per_thread: 4,
        serial: false,
    },
    Tuning {
        chunk_bytes: 1 << 20,
        chunks_per_thread: 4,
        serial: true,
    },
    Tuning {
        chunk_bytes: 7,
        chunks_per_thread: 3,
        serial: false,
    },
    Tuning {
        chunk_bytes: 5,
        chunks_per_thread: 1,
        serial: true,
    },
];

/// Runs every encoding under every tuning, checks they agree, and returns the result.
fn run_everywhere(
    tok: &Tokenizer,
    text: &[u8],
    opts: &FragmentOptions,
) -> Result<(Ragged, FragmentStats)> {
    let mut first: Option<Result<(Ragged, FragmentStats)>> = None;
    for (kind, bytes) in encodings(text) {
        let file = temp_file(&format!("{kind}.tsv.gz"), &bytes);
        for t in &TUNINGS {
            let got = run(tok, &file.0, opts, t).map_err(|e| match e {
                // The path differs per encoding; compare the rest.
                Error::Parse { line, problem, .. } => Error::Parse {
                    path: PathBuf::new(),
                    line,
                    problem,
                },
                other => other,
            });
            match &first {
                None => first = Some(got),
                Some(Ok(want)) => {
                    assert_eq!(got.as_ref().ok(), Some(want), "{kind} {t:?}")
                }
                Some(Err(want)) => assert_eq!(
                    got.as_ref().err().map(ToString::to_string),
                    Some(want.to_string()),
                    "{kind} {t:?}"
                ),
            }
        }
    }
    first.expect("at least one run")
}

fn cells(r: &Ragged) -> Vec<(String, Vec<i32>)> {
    (0..r.len())
        .map(|i| (r.names[i].clone(), r.cell(i).to_vec()))
        .collect()
}

fn small() -> (Tokenizer, &'static str) {
    // Genomic order: chr1:100-200 (id 0), chr1:150-250 (id 1), chr10:0-100 (id 3),
    // chr2:0-50 (id 2), since "chr10" < "chr2" as bytes.
    let tok = tokenizer(&[
        ("chr1", 100, 200),
        ("chr1", 150, 250),
        ("chr2", 0, 50),
        ("chr10", 0, 100),
    ]);
    let text = "# a 10x header\n\
                chr2\t10\t20\tB\t1\n\
                chr1\t160\t170\tA\t1\n\
                chr10\t5\t6\tA\t2\n\
                chr1\t0\t10\tC\t1\n\
                chr2\t0\t1\tA\t1\textra\tcolumns\n\
                chr1\t190\t210\tB\t1\n\
                chrX\t0\t100\tA\t1\n\
                chr1\t160\t170\tA\t1\n";
    (tok, text)
}

fn owned(v: &[(&str, &[i32])]) -> Vec<(String, Vec<i32>)> {
    v.iter()
        .map(|(n, ids)| (n.to_string(), ids.to_vec()))
        .collect()
}

#[test]
fn hand_checked_unique_and_all() {
    let (tok, text) = small();
    let (r, stats) =
        run_everywhere(&tok, text.as_bytes(), &FragmentOptions::default()).expect("valid");
    // Cells in first-seen order; C overlaps nothing and is dropped.
    assert_eq!(cells(&r), owned(&[("B", &[0, 1, 2]), ("A", &[0, 1, 3, 2])]));
    assert_eq!(
        stats,
        FragmentStats {
            lines: 9,
            fragments: 8,
            skipped_lines: 0,
            first_skipped: None,
            lost_blocks: 0,
            first_lost_block: None,
            missing_eof: None,
        }
    );
    let all = FragmentOptions {
        unique: false,
        ..FragmentOptions::default()
    };
    let (r, _) = run_everywhere(&tok, text.as_bytes(), &all).expect("valid");
    assert_eq!(
        cells(&r),
        owned(&[("B", &[2, 0, 1]), ("A", &[0, 1, 3, 2, 0, 1])])
    );
}

#[test]
fn barcode_list_selects_orders_and_fills_unk() {
    let (tok, text) = small();
    let unk = tok.special_id(Special::Unk) as i32;
    let listed = FragmentOptions {
        barcodes: Some(vec!["C".into(), "A".into(), "Z".into()]),
        ..FragmentOptions::default()
    };
    let (r, stats) = run_everywhere(&tok, text.as_bytes(), &listed).expect("valid");
    assert_eq!(
        cells(&r),
        owned(&[("C", &[unk]), ("A", &[0, 1, 3, 2]), ("Z", &[unk])])
    );
    assert_eq!(
        stats.fragments, 8,
        "lines of unlisted barcodes are still counted"
    );
    let dup = FragmentOptions {
        barcodes: Some(vec!["A".into(), "A".into()]),
        ..FragmentOptions::default()
    };
    assert!(matches!(
        run_everywhere(&tok, text.as_bytes(), &dup),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn min_and_max_fragments_count_lines_per_barcode() {
    // Lines per barcode: A 5, B 2, C 1.
    let (tok, text) = small();
    let unk = tok.special_id(Special::Unk) as i32;
    let opts = |min, max, barcodes: Option<Vec<String>>| FragmentOptions {
        barcodes,
        min_fragments: min,
        max_fragments: max,
        ..FragmentOptions::default()
    };
    let run =
        |o: FragmentOptions| cells(&run_everywhere(&tok, text.as_bytes(), &o).expect("valid").0);
    assert_eq!(run(opts(3, None, None)), owned(&[("A", &[0, 1, 3, 2])]));
    assert_eq!(run(opts(2, Some(2), None)), owned(&[("B", &[0, 1, 2])]));
    assert_eq!(run(opts(5, Some(5), None)), owned(&[("A", &[0, 1, 3, 2])]));
    let listed = Some(vec!["C".to_string(), "A".to_string(), "B".to_string()]);
    // Listed cells outside the bounds are dropped; C is inside and gets unk.
    assert_eq!(
        run(opts(0, Some(2), listed.clone())),
        owned(&[("C", &[unk]), ("B", &[0, 1, 2])])
    );
    assert_eq!(run(opts(1, Some(1), listed)), owned(&[("C", &[unk])]));
    assert!(matches!(
        run_everywhere(&tok, text.as_bytes(), &opts(3, Some(2), None)),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn runs_of_spaces_separate_columns_like_tabs() {
    let (tok, good) = small();
    let spaced: String = good
        .lines()
        .map(|l| l.replace('\t', "    ") + "\n")
        .collect();
    let opts = FragmentOptions::default();
    let want = run_everywhere(&tok, good.as_bytes(), &opts).expect("tabs");
    let got = run_everywhere(&tok, spaced.as_bytes(), &opts).expect("spaces");
    assert_eq!(cells(&got.0), cells(&want.0));
    assert!(!want.0.ids.is_empty());
}

#[test]
fn bad_lines_raise_with_line_numbers_or_are_skipped() {
    let (tok, good) = small();
    let cases: [(&[u8], LineProblem); 7] = [
        (
            b"chr1\t5\t9\tA",
            LineProblem::TooFewColumns {
                found: 4,
                needed: 5,
            },
        ),
        (
            b"chr1  5 9 \tA",
            LineProblem::TooFewColumns {
                found: 4,
                needed: 5,
            },
        ),
        (
            b"chr1\tx5\t9\tA\t1",
            LineProblem::NotAnInteger {
                column: "start",
                value: "x5".into(),
            },
        ),
        (
            b"chr1\t9\t5\tA\t1",
            LineProblem::StartAfterEnd { start: 9, end: 5 },
        ),
        (b"chr1\t5\t9\t\xff\xfe\t1", LineProblem::NotUtf8),
        (
            b"chr1\t5\t9\tA\t1.5",
            LineProblem::NotAnInteger {
                column: "count",
                value: "1.5".into(),
            },
        ),
        (
            b"chr1\t5\t99999999999\tA\t1",
            LineProblem::TooLarge {
                column: "end",
                value: "99999999999".into(),
            },
        ),
    ];
    for (bad, problem) in cases {
        // Bad line 5 and line 10 (with the header, good has 9 lines).
        let mut text = Vec::new();
        for (i, line) in good.lines().enumerate() {
            if i == 4 || i == 8 {
                text.extend_from_slice(bad);
                text.push(b'\n');
            }
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        let err = run_everywhere(&tok, &text, &FragmentOptions::default());
        match err {
            Err(Error::Parse {
                line, problem: p, ..
            }) => {
                assert_eq!((line, &p), (5, &problem))
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        let skip = FragmentOptions {
            skip_bad_lines: true,
            ..FragmentOptions::default()
        };
        let (r, stats) = run_everywhere(&tok, &text, &skip).expect("skipping");
        assert_eq!(cells(&r), owned(&[("B", &[0, 1, 2]), ("A", &[0, 1, 3, 2])]));
        assert_eq!(stats.lines, 11);
        assert_eq!(stats.skipped_lines, 2);
        assert_eq!(stats.first_skipped, Some((5, problem)));
    }
}

#[test]
fn crlf_blank_lines_and_missing_final_newline() {
    let (tok, text) = small();
    let mut crlf = text
        .replace('\n', "\r\n")
        .replacen("\r\n", "\r\n\n   \n", 1);
    crlf.truncate(crlf.len() - 2);
    let (r, stats) =
        run_everywhere(&tok, crlf.as_bytes(), &FragmentOptions::default()).expect("valid");
    assert_eq!(cells(&r), owned(&[("B", &[0, 1, 2]), ("A", &[0, 1, 3, 2])]));
    assert_eq!((stats.lines, stats.fragments), (11, 8));
    let (r, stats) = run_everywhere(&tok, b"", &FragmentOptions::default()).expect("empty file");
    assert!(r.is_empty() && r.offsets == vec![0] && stats.lines == 0);
    let (r, _) =
        run_everywhere(&tok, b"# only\n# comments", &FragmentOptions::default()).expect("comments");
    assert!(r.is_empty());
}

#[test]
fn truncated_or_corrupt_compression_is_an_error() {
    let (tok, text) = small();
    let text = text.repeat(2000);
    let opts = FragmentOptions::default();
    let check = |bytes: &[u8], what: &str| {
        let f = temp_file("broken.gz", bytes);
        for t in &TUNINGS[..3] {
            match run(&tok, &f.0, &opts, t) {
                Err(Error::Compression { line, .. }) => {
                    assert!(line <= 18_000, "{what}: line {line}")
                }
                other => panic!("{what} {t:?}: expected a compression error, got {other:?}"),
            }
        }
    };
    let gz = gzip(text.as_bytes());
    check(&gz[..gz.len() / 2], "gzip cut in half");
    check(&gz[..gz.len() - 3], "gzip without its trailer");
    // A corrupt gzip stream inflates to garbage before its CRC is checked at the end,
    // so it fails either on a garbled line or on the CRC; it must not succeed.
    let mut bad = gz.clone();
    bad[gz.len() / 2] ^= 0xff;
    let f = temp_file("corrupt.gz", &bad);
    assert!(matches!(
        tokenize_fragments(&tok, &f.0, &opts),
        Err(Error::Compression { .. } | Error::Parse { .. })
    ));
    let bg = bgzf_bytes(text.as_bytes(), 4000);
    check(&bg[..bg.len() / 2], "BGZF cut in half");
    // Without its EOF marker a BGZF file is read whole (as htslib does) and says so.
    let f = temp_file("no-eof.gz", &bg[..bg.len() - bgzf::EOF_MARKER.len()]);
    let whole = run_everywhere(&tok, text.as_bytes(), &opts).expect("valid");
    for t in &TUNINGS[..3] {
        let (r, stats) = run(&tok, &f.0, &opts, t).expect("read without its EOF marker");
        assert_eq!((&r, stats.lines), (&whole.0, whole.1.lines));
        assert_eq!(
            stats.missing_eof,
            Some((bg.len() - bgzf::EOF_MARKER.len()) as u64)
        );
    }
    // Corrupt the deflate data of the second block (header bytes such as MTIME are
    // not checked by anyone).
    let second = usize::from(u16::from_le_bytes([bg[16], bg[17]])) + 1;
    let mut bad = bg.clone();
    bad[second + 20] ^= 0xff;
    check(&bad, "corrupt BGZF");
    // Not found is its own error.
    let missing = std::env::temp_dir().join("atacformer-test-no-such-file.tsv.gz");
    assert!(matches!(
        tokenize_fragments(&tok, &missing, &opts),
        Err(Error::NotFound { .. })
    ));
}

/// Brute force: each fragment against every universe region.
fn oracle(
    regions: &[(String, u32, u32)],
    lines: &[(String, u32, u32, String)],
    opts: &FragmentOptions,
    unk: i32,
) -> Vec<(String, Vec<i32>)> {
    let mut order: Vec<usize> = (0..regions.len()).collect();
    order.sort_by(|&a, &b| regions[a].cmp(&regions[b]));
    let mut rank = vec![0; regions.len()];
    for (r, &id) in order.iter().enumerate() {
        rank[id] = r;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut acc: std::collections::HashMap<String, (u64, Vec<i32>)> = Default::default();
    for (c, s, e, bc) in lines {
        if !acc.contains_key(bc) {
            seen.push(bc.clone());
        }
        let cell = acc.entry(bc.clone()).or_default();
        cell.0 += 1;
        let mut hits: Vec<usize> = (0..regions.len())
            .filter(|&i| regions[i].0 == *c && regions[i].1 < *e && *s < regions[i].2)
            .collect();
        hits.sort_by_key(|&i| (regions[i].1, regions[i].2));
        cell.1.extend(hits.iter().map(|&i| i as i32));
    }
    let names = opts.barcodes.clone().unwrap_or(seen);
    let mut out = Vec::new();
    for name in names {
        let (n, mut ids) = acc.get(&name).cloned().unwrap_or_default();
        if n < opts.min_fragments || opts.max_fragments.is_some_and(|m| n > m) {
            continue;
        }
        if opts.unique {
            ids.sort_by_key(|&i| rank[i as usize]);
            ids.dedup();
        }
        if ids.is_empty() {
            if opts.barcodes.is_none() {
                continue;
            }
            ids.push(unk);
        }
        out.push((name, ids));
    }
    out
}

#[test]
fn matches_brute_force_on_random_files() {
    let chroms = ["chr1", "chr2", "chr10", "chrX"];
    for seed in 0..6u64 {
        let mut rng = Rng::new(seed);
        let mut regions: Vec<(String, u32, u32)> = Vec::new();
        while regions.len() < 300 {
            let c = chroms[rng.below(3) as usize].to_string(); // chrX has no regions
            let s = rng.below(20_000);
            let w = match rng.below(8) {
                0 => rng.below(5000),
                1 => 0,
                _ => 50 + rng.below(400),
            };
            if !regions.contains(&(c.clone(), s, s + w)) {
                regions.push((c, s, s + w));
            }
        }
        let refs: Vec<(&str, u32, u32)> = regions
            .iter()
            .map(|(c, s, e)| (c.as_str(), *s, *e))
            .collect();
        let tok = tokenizer(&refs);
        let n_barcodes = 1 + rng.below(40) as usize;
        // Short, 10x-like (18 bytes, inline keys) and long (heap keys) barcodes.
        let barcodes: Vec<String> = (0..n_barcodes)
            .map(|i| match i % 3 {
                0 => format!("BC{i:03}-1"),
                1 => format!("AACG{i:012}-1"),
                _ => format!("sample-with-a-long-name#{i:04}"),
            })
            .collect();
        let mut lines: Vec<(String, u32, u32, String)> = (0..1500)
            .map(|_| {
                let c = chroms[rng.below(4) as usize].to_string();
                let s = rng.below(21_000);
                let e = s + rng.below(600);
                (
                    c,
                    s,
                    e,
                    barcodes[rng.below(n_barcodes as u64) as usize].clone(),
                )
            })
            .collect();
        if seed % 2 == 0 {
            // 10x files are sorted by position; half the runs use that order.
            lines.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        }
        let mut text = String::from("#id=synthetic\n");
        for (c, s, e, bc) in &lines {
            text.push_str(&format!("{c}\t{s}\t{e}\t{bc}\t{}\n", 1 + rng.below(3)));
        }
        let mut listed: Vec<String> = barcodes.iter().step_by(2).cloned().collect();
        listed.push("ABSENT-1".into());
        listed.reverse();
        let unk = tok.special_id(Special::Unk) as i32;
        for opts in [
            FragmentOptions::default(),
            FragmentOptions {
                unique: false,
                ..FragmentOptions::default()
            },
            FragmentOptions {
                barcodes: Some(listed.clone()),
                min_fragments: 20,
                ..FragmentOptions::default()
            },
            FragmentOptions {
                barcodes: Some(listed.clone()),
                unique: false,
                max_fragments: Some(60),
                ..FragmentOptions::default()
            },
        ] {
            let (got, stats) = run_everywhere(&tok, text.as_bytes(), &opts).expect("valid");
            assert_eq!(
                cells(&got),
                oracle(&regions, &lines, &opts, unk),
                "seed {seed} {opts:?}"
            );
            assert_eq!((stats.lines, stats.fragments), (1501, 1500));
        }
    }
}

#[test]
fn many_duplicates_are_compacted_without_changing_the_result() {
    // One cell hitting the same two regions over and over, alternating, so consecutive
    // deduplication cannot remove them and compaction must.
    let tok = tokenizer(&[("chr1", 0, 10), ("chr1", 100, 110)]);
    let mut text = String::new();
    for i in 0..20_000 {
        let s = if i % 2 == 0 { 0 } else { 100 };
        text.push_str(&format!("chr1\t{s}\t{}\tA\t1\n", s + 5));
    }
    let f = temp_file("dups.tsv", text.as_bytes());
    let (r, _) = tokenize_fragments(&tok, &f.0, &FragmentOptions::default()).expect("valid");
    assert_eq!(cells(&r), owned(&[("A", &[0, 1])]));
}

#[test]
fn genomic_order_matches_region_set_sort() {
    for seed in 0..4u64 {
        let mut rng = Rng::new(seed);
        let names = ["chr1", "chr10", "chr2", "chrX", "HLA-A"];
        let mut regions: Vec<(&str, u32, u32)> = Vec::new();
        while regions.len() < 500 {
            let r = (names[rng.below(5) as usize], rng.below(5000), 0);
            let r = (r.0, r.1, r.1 + rng.below(300));
            if !regions.contains(&r) {
                regions.push(r);
            }
        }
        if seed % 2 == 0 {
            // Sorted within each chromosome, chromosomes interleaved: the fast path.
            regions.sort_by_key(|r| (r.1, r.2));
        }
        let tok = tokenizer(&regions);
        let order = GenomicOrder::new(tok.universe());
        let mut sorted = tok.universe().regions().clone();
        sorted.sort();
        for (rank, &id) in order.ids().iter().enumerate() {
            let r = &regions[id as usize];
            let s = sorted.get(rank).expect("same length");
            assert_eq!((r.0, r.1, r.2), (s.chr.as_str(), s.start, s.end));
            assert_eq!(order.ranks()[id as usize] as usize, rank);
        }
    }
}

/// Runs plain, gzip and BGZF under large and small chunks (lines of a megabyte make the
/// tiny chunks of [`TUNINGS`] too slow).
fn run_long_lines(
    tok: &Tokenizer,
    text: &[u8],
    opts: &FragmentOptions,
) -> Vec<Result<(Ragged, FragmentStats)>> {
    let tunings = [(1 << 20, false), (1 << 16, true), (4096, false)];
    let mut out = Vec::new();
    for (kind, bytes) in encodings(text).into_iter().take(3) {
        let file = temp_file(&format!("{kind}.tsv.gz"), &bytes);
        for (chunk_bytes, serial) in tunings {
            let t = Tuning {
                chunk_bytes,
                chunks_per_thread: 2,
                serial,
            };
            out.push(run(tok, &file.0, opts, &t));
        }
    }
    out
}

#[test]
fn lines_longer_than_the_limit_are_errors_and_long_comments_are_skipped() {
    let (tok, text) = small();
    let long = vec![b'x'; crate::io::MAX_LINE_BYTES + 10];
    // A line with no newline at all (as /dev/zero), and one with data after it.
    for tail in [&b""[..], b"\tchr1\t1\t2\t1\n"] {
        let mut bad = text.as_bytes().to_vec();
        bad.extend_from_slice(&long);
        bad.extend_from_slice(tail);
        for got in run_long_lines(&tok, &bad, &FragmentOptions::default()) {
            match got {
                Err(Error::Parse {
                    line: 10,
                    problem: LineProblem::TooLong { .. },
                    ..
                }) => {}
                other => panic!("expected a too-long line 10, got {other:?}"),
            }
        }
        let skip = FragmentOptions {
            skip_bad_lines: true,
            ..FragmentOptions::default()
        };
        for got in run_long_lines(&tok, &bad, &skip) {
            let (r, stats) = got.expect("skipped");
            assert_eq!(cells(&r), owned(&[("B", &[0, 1, 2]), ("A", &[0, 1, 3, 2])]));
            assert_eq!((stats.lines, stats.skipped_lines), (10, 1));
            assert!(matches!(
                stats.first_skipped,
                Some((10, LineProblem::TooLong { .. }))
            ));
        }
    }
    // A comment longer than the limit is skipped, wherever the chunks cut it.
    let mut commented = b"#".to_vec();
    commented.extend_from_slice(&long);
    commented.push(b'\n');
    commented.extend_from_slice(text.as_bytes());
    for got in run_long_lines(&tok, &commented, &FragmentOptions::default()) {
        let (r, stats) = got.expect("a long comment is skipped");
        assert_eq!(cells(&r), owned(&[("B", &[0, 1, 2]), ("A", &[0, 1, 3, 2])]));
        assert_eq!(stats.lines, 10);
    }
}

#[test]
fn a_bgzf_block_that_swallows_the_next_is_an_error_or_lost_with_a_count() {
    let (tok, _) = small();
    // Blocks of four whole lines each: barcode A in block 0, B in block 1, C in block 2.
    let line = |bc: &str| format!("chr1\t160\t170\t{bc}\t1\n");
    let text: String = ["A", "B", "C"]
        .iter()
        .map(|bc| line(bc).repeat(4))
        .collect();
    let file = bgzf_bytes(text.as_bytes(), 4 * line("A").len());
    let size = |at: usize| usize::from(u16::from_le_bytes([file[at + 16], file[at + 17]])) + 1;
    let (len0, len1) = (size(0), size(size(0)));
    // Block 0's BSIZE grown over block 1, whose ISIZE is the same.
    let mut swallow = file.clone();
    let bsize = u16::try_from(len0 + len1 - 1).expect("small");
    swallow[16..18].copy_from_slice(&bsize.to_le_bytes());
    let f = temp_file("swallow.tsv.gz", &swallow);
    for t in &TUNINGS[..3] {
        match run(&tok, &f.0, &FragmentOptions::default(), t) {
            Err(Error::Compression { message, .. }) => {
                assert!(message.contains("block at byte 0") && message.contains("BSIZE"))
            }
            other => panic!("{t:?}: expected an error, got {other:?}"),
        }
        let skip = FragmentOptions {
            skip_bad_lines: true,
            ..FragmentOptions::default()
        };
        let (r, stats) = run(&tok, &f.0, &skip, t).expect("the block is skipped");
        // The swallowing block went with what it swallowed; C is intact.
        assert_eq!(cells(&r), owned(&[("C", &[0, 1])]), "{t:?}");
        // Two blocks are lost (the swallowed one is counted), and the first line after
        // the gap, which may continue a line of the lost blocks, is skipped and counted.
        assert_eq!((stats.lost_blocks, stats.skipped_lines), (2, 1));
        assert_eq!(stats.fragments, 3);
        assert!(stats
            .first_lost_block
            .is_some_and(|m| m.contains("block at byte 0")));
    }
    // A bad CRC in block 1 loses block 1 only; the lines cut by it go with it.
    let mut crc = file.clone();
    crc[len0 + len1 - 8] ^= 1;
    let f = temp_file("crc.tsv.gz", &crc);
    let skip = FragmentOptions {
        skip_bad_lines: true,
        ..FragmentOptions::default()
    };
    for t in &TUNINGS[..3] {
        let err = run(&tok, &f.0, &FragmentOptions::default(), t).expect_err("bad CRC");
        assert!(
            err.to_string().contains(&format!("block at byte {len0}")),
            "{err}"
        );
        let (r, stats) = run(&tok, &f.0, &skip, t).expect("skipped");
        assert_eq!(cells(&r), owned(&[("A", &[0, 1]), ("C", &[0, 1])]), "{t:?}");
        assert_eq!(
            (stats.lost_blocks, stats.skipped_lines, stats.fragments),
            (1, 1, 7)
        );
    }
    // Blocks that cut lines: block 1 holds the end of line 2 and the start of line 3, so
    // losing it loses both (the halves left around it are not glued into a line).
    let text = "chr1\t160\t170\tA\t1\nchr1\t160\t170\tBBBB\t1\nchr1\t160\t170\tC\t1\n";
    let file = bgzf_bytes(text.as_bytes(), 24);
    let (len0, len1) = (size_of(&file, 0), size_of(&file, size_of(&file, 0)));
    let mut crc = file.clone();
    crc[len0 + len1 - 8] ^= 1;
    let f = temp_file("cut.tsv.gz", &crc);
    for t in &TUNINGS[..3] {
        let (r, stats) = run(&tok, &f.0, &skip, t).expect("skipped");
        assert_eq!(cells(&r), owned(&[("A", &[0, 1])]), "{t:?} {stats:?}");
        assert_eq!((stats.lost_blocks, stats.fragments), (1, 1));
        // The piece of line 2 before the gap and the piece of line 3 after it: one run of
        // text between two newlines, one skipped line.
        assert_eq!(stats.skipped_lines, 1, "{t:?}");
    }
}

fn size_of(file: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([file[at + 16], file[at + 17]])) + 1
}

#[test]
fn barcodes_past_the_workers_table_are_resolved_by_the_merger() {
    let (tok, _) = small();
    // More distinct barcodes than the workers' table holds; none overlaps anything.
    let n = (1 << 18) + 5000;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("chrZ\t{i}\t{}\tbc{i:07}\t1\n", i + 1));
    }
    // Then lines of an early and a late barcode that do overlap.
    let late = format!("bc{:07}", n - 1);
    text.push_str(&format!(
        "chr1\t160\t170\t{late}\t1\nchr2\t0\t1\tbc0000005\t1\n"
    ));
    text.push_str(&format!("chr2\t0\t1\t{late}\t1\n"));
    let f = temp_file("many.tsv", text.as_bytes());
    for t in &TUNINGS[..2] {
        let (r, stats) = run(&tok, &f.0, &FragmentOptions::default(), t).expect("valid");
        assert_eq!(
            cells(&r),
            vec![
                ("bc0000005".to_string(), vec![2]),
                (late.clone(), vec![0, 1, 2])
            ]
        );
        assert_eq!(stats.fragments, n as u64 + 3);
    }
    // Past max_fragments a barcode is dropped, however many lines follow.
    let text = "chr1\t160\t170\tA\t1\n".repeat(50) + "chr2\t0\t1\tB\t1\n";
    let opts = FragmentOptions {
        max_fragments: Some(10),
        ..FragmentOptions::default()
    };
    let (r, _) = run_everywhere(&tok, text.as_bytes(), &opts).expect("valid");
    assert_eq!(cells(&r), owned(&[("B", &[2])]));
}

#[test]
fn hand_checked_counts_and_qc() {
    let (tok, text) = small();
    let (r, _) = run_everywhere(&tok, text.as_bytes(), &FragmentOptions::default()).expect("valid");
    // B: chr2:10-20 hits id 2; chr1:190-210 hits ids 0 and 1. A: chr1:160-170 twice
    // (ids 0 and 1 each time), chr10:5-6 (id 3), chr2:0-1 (id 2), chrX overlaps nothing.
    assert_eq!(r.cell_counts(0), Some(&[1, 1, 1][..]));
    assert_eq!(r.cell_counts(1), Some(&[2, 2, 1, 1][..]));
    let qc = r.qc.as_ref().expect("fragments measure qc");
    assert_eq!(qc.n_fragments, vec![2, 5]);
    assert_eq!(qc.n_in_universe, vec![2, 4]);
    assert_eq!(qc.n_tokens, vec![3, 4]);
    // A listed barcode with no tokens and one absent from the file: [unk], count 0.
    let listed = FragmentOptions {
        barcodes: Some(vec!["C".into(), "A".into(), "Z".into()]),
        ..FragmentOptions::default()
    };
    let (r, _) = run_everywhere(&tok, text.as_bytes(), &listed).expect("valid");
    let unk = tok.special_id(Special::Unk) as i32;
    assert_eq!(r.cell(0), &[unk]);
    assert_eq!(r.cell_counts(0), Some(&[0][..]));
    assert_eq!(r.cell_counts(1), Some(&[2, 2, 1, 1][..]));
    assert_eq!(r.cell_counts(2), Some(&[0][..]));
    let qc = r.qc.as_ref().expect("fragments measure qc");
    assert_eq!(qc.n_fragments, vec![1, 5, 0]);
    assert_eq!(qc.n_in_universe, vec![0, 4, 0]);
    assert_eq!(qc.n_tokens, vec![0, 4, 0]);
    // Every overlap kept: no counts, the same qc.
    let all = FragmentOptions {
        unique: false,
        ..FragmentOptions::default()
    };
    let (r, _) = run_everywhere(&tok, text.as_bytes(), &all).expect("valid");
    assert_eq!(r.counts, None);
    let qc = r.qc.as_ref().expect("fragments measure qc");
    assert_eq!(qc.n_in_universe, vec![2, 4]);
    assert_eq!(qc.n_tokens, vec![3, 6]);
}

#[test]
fn counts_survive_compaction() {
    // One cell whose overlaps pass the first compaction many times over, in an order that
    // defeats the in-place count (ranks cycle), against counts made by hand.
    let regions: Vec<(String, u32, u32)> = (0..50u32)
        .map(|i| ("chr1".to_string(), i * 10, i * 10 + 10))
        .collect();
    let refs: Vec<(&str, u32, u32)> = regions
        .iter()
        .map(|(c, s, e)| (c.as_str(), *s, *e))
        .collect();
    let tok = tokenizer(&refs);
    let mut text = String::new();
    let mut want = vec![0u32; 50];
    let mut rng = Rng::new(7);
    for _ in 0..20_000 {
        let i = rng.below(50);
        want[i as usize] += 1;
        text.push_str(&format!("chr1\t{}\t{}\tX\t1\n", i * 10 + 2, i * 10 + 5));
    }
    let (r, _) = run(
        &tok,
        &temp_file("cycle.tsv", text.as_bytes()).0,
        &FragmentOptions::default(),
        &Tuning::default(),
    )
    .expect("valid");
    let ids: Vec<i32> = want
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, _)| i as i32)
        .collect();
    assert_eq!(r.cell(0), ids.as_slice());
    let counts: Vec<u32> = want.into_iter().filter(|&n| n > 0).collect();
    assert_eq!(r.cell_counts(0), Some(counts.as_slice()));
    assert_eq!(
        r.qc.as_ref().map(|q| q.n_fragments.clone()),
        Some(vec![20_000])
    );
}
