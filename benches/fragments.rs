//! Fragment-file tokenization throughput: a synthetic 10x BGZF `fragments.tsv.gz` against a
//! synthetic universe over the hg38 chromosomes, with 1 and 2 threads.
//!
//! ```text
//! cargo bench -p atacformer-core --bench fragments
//! ATACFORMER_BENCH_FRAGMENTS=2000000 cargo bench -p atacformer-core --bench fragments
//! ```
//!
//! Sizes come from `ATACFORMER_BENCH_FRAGMENTS` (default 20,000,000),
//! `ATACFORMER_BENCH_BARCODES` (10,000) and `ATACFORMER_BENCH_UNIVERSE` (1,000,000);
//! `ATACFORMER_BENCH_THREADS` (default `1,2`) and `ATACFORMER_BENCH_REPEATS` (3) set the
//! runs.
//! Chromosome sizes are read from `ATACFORMER_CHROM_SIZES`, else
//! `../shared/data/hg38.chrom.sizes` or `tests/data/hg38.chrom.sizes` under the project
//! root. Data is generated once under `target/bench-data/` and reused.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use atacformer_core::bgzf;
use atacformer_core::fragments::{tokenize_fragments, FragmentOptions};
use atacformer_core::gather::{gather_csr, peak_table, Csr, PeakTable};
use atacformer_core::parallel;
use atacformer_core::rng::SplitMix64 as Rng;
use atacformer_core::{RegionSet, Tokenizer};

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chrom_sizes() -> Vec<(String, u64)> {
    let candidates = [
        std::env::var_os("ATACFORMER_CHROM_SIZES").map(PathBuf::from),
        Some(root().join("../shared/data/hg38.chrom.sizes")),
        Some(root().join("tests/data/hg38.chrom.sizes")),
    ];
    let path = candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .expect("no hg38.chrom.sizes: set ATACFORMER_CHROM_SIZES");
    let text = fs::read_to_string(&path).expect("readable chrom sizes");
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.trim().parse().ok()?))
        })
        .collect()
}

/// Universe: `n` regions of 250-750 bp spread over the genome in proportion to
/// chromosome length, sorted within each chromosome, chromosomes in file order.
fn write_universe(
    path: &Path,
    sizes: &[(String, u64)],
    n: u64,
    rng: &mut Rng,
) -> Vec<Vec<(u32, u32)>> {
    let total: u64 = sizes.iter().map(|s| s.1).sum();
    let mut per_chrom = Vec::new();
    let mut out = BufWriter::new(fs::File::create(path).expect("writable target dir"));
    for (name, len) in sizes {
        let k = n * len / total;
        let mut regions: Vec<(u32, u32)> = (0..k)
            .map(|_| {
                let w = 250 + rng.below(501);
                let s = rng.below(len.saturating_sub(w + 1));
                (s as u32, (s + w) as u32)
            })
            .collect();
        regions.sort_unstable();
        regions.dedup();
        for &(s, e) in &regions {
            writeln!(out, "{name}\t{s}\t{e}").expect("writable");
        }
        per_chrom.push(regions);
    }
    out.flush().expect("writable");
    per_chrom
}

thread_local! {
    static COMPRESSOR: RefCell<libdeflater::Compressor> =
        RefCell::new(libdeflater::Compressor::new(libdeflater::CompressionLvl::default()));
}

/// Compresses the full blocks of `text` in parallel, writes them, keeps the remainder.
fn flush_blocks(text: &mut Vec<u8>, out: &mut impl Write, all: bool) {
    let full = if all {
        text.len()
    } else {
        text.len() / bgzf::WRITE_BLOCK_DATA * bgzf::WRITE_BLOCK_DATA
    };
    let blocks: Vec<&[u8]> = text[..full].chunks(bgzf::WRITE_BLOCK_DATA).collect();
    let encoded = parallel::map(&blocks, |b| {
        COMPRESSOR.with(|c| {
            let mut v = Vec::new();
            bgzf::encode_block(&mut c.borrow_mut(), b, &mut v).expect("block fits");
            v
        })
    });
    for e in encoded {
        out.write_all(&e).expect("writable");
    }
    text.drain(..full);
}

/// 10x-style fragments sorted by position: half near universe regions, half anywhere;
/// lengths from a nucleosome-like mixture; barcodes uniform over `n_barcodes`.
fn write_fragments(
    path: &Path,
    sizes: &[(String, u64)],
    universe: &[Vec<(u32, u32)>],
    n: u64,
    n_barcodes: u64,
    rng: &mut Rng,
) {
    let barcodes: Vec<String> = (0..n_barcodes)
        .map(|_| {
            let s: String = (0..16)
                .map(|_| b"ACGT"[rng.below(4) as usize] as char)
                .collect();
            format!("{s}-1")
        })
        .collect();
    let total: u64 = sizes.iter().map(|s| s.1).sum();
    let mut out = BufWriter::new(fs::File::create(path).expect("writable target dir"));
    let mut text = Vec::with_capacity(32 << 20);
    text.extend_from_slice(b"# id=synthetic\n# reference_path=hg38\n");
    let mut line = String::new();
    for ((name, len), regions) in sizes.iter().zip(universe) {
        let k = n * len / total;
        let mut frags: Vec<(u32, u32, u32)> = (0..k)
            .map(|_| {
                let flen = match rng.below(10) {
                    0..=4 => 40 + rng.below(160),
                    5..=7 => 180 + rng.below(220),
                    _ => 380 + rng.below(320),
                };
                let s = if !regions.is_empty() && rng.below(2) == 0 {
                    let (rs, re) = regions[rng.below(regions.len() as u64) as usize];
                    u64::from(rs).saturating_sub(flen / 2) + rng.below(u64::from(re - rs) + 1)
                } else {
                    rng.below(len.saturating_sub(flen + 1))
                };
                (s as u32, (s + flen) as u32, rng.below(n_barcodes) as u32)
            })
            .collect();
        frags.sort_unstable();
        for (s, e, b) in frags {
            line.clear();
            let count = if rng.below(5) == 0 {
                2 + rng.below(3)
            } else {
                1
            };
            let _ = writeln!(line, "{name}\t{s}\t{e}\t{}\t{count}", barcodes[b as usize]);
            text.extend_from_slice(line.as_bytes());
        }
        if text.len() >= 16 << 20 {
            flush_blocks(&mut text, &mut out, false);
        }
    }
    flush_blocks(&mut text, &mut out, true);
    out.write_all(&bgzf::EOF_MARKER).expect("writable");
    out.flush().expect("writable");
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{cpu}, {cores} logical cores, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// CPU seconds (user + system) used by this process so far; Linux only, else 0.
fn cpu_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line; clock ticks are 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let n_fragments = env_count("ATACFORMER_BENCH_FRAGMENTS", 20_000_000);
    let n_barcodes = env_count("ATACFORMER_BENCH_BARCODES", 10_000);
    let n_universe = env_count("ATACFORMER_BENCH_UNIVERSE", 1_000_000);
    let dir = root()
        .join("target/bench-data")
        .join(format!("fragments-{n_fragments}-{n_barcodes}-{n_universe}"));
    let universe_path = dir.join("universe.bed");
    let fragments_path = dir.join("fragments.tsv.gz");
    if !fragments_path.is_file() {
        let t = Instant::now();
        fs::create_dir_all(&dir).expect("writable target dir");
        let sizes = chrom_sizes();
        let mut rng = Rng::new(42);
        let universe = write_universe(&universe_path, &sizes, n_universe, &mut rng);
        let tmp = dir.join("fragments.tsv.gz.tmp");
        write_fragments(&tmp, &sizes, &universe, n_fragments, n_barcodes, &mut rng);
        fs::rename(&tmp, &fragments_path).expect("writable target dir");
        eprintln!(
            "generated {} in {:.1} s",
            dir.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let tok = Tokenizer::from_bed(&universe_path).expect("valid universe");
    let size_mb = fs::metadata(&fragments_path).map_or(0, |m| m.len()) as f64 / 1e6;
    let opts = FragmentOptions::default();

    // Warm the page cache and check the output once.
    let (cells, stats) = tokenize_fragments(&tok, &fragments_path, &opts).expect("valid file");
    assert_eq!(stats.fragments, stats.lines - 2);

    println!("machine: {}", machine());
    println!(
        "data: {} fragments, {} barcodes, {}-region universe (hg38), BGZF {:.0} MB; \
         output {} cells, {} tokens (unique=True)",
        stats.fragments,
        n_barcodes,
        tok.universe().len(),
        size_mb,
        cells.len(),
        cells.ids.len()
    );
    println!();
    println!("load average before the runs: {}", load_average());
    println!();
    println!("| threads | best wall (s) | median wall (s) | fragments/s (best) | speedup | CPU s (best run) |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    let reps = env_count("ATACFORMER_BENCH_REPEATS", 3).max(1) as usize;
    let mut base = None;
    let thread_counts: Vec<usize> = std::env::var("ATACFORMER_BENCH_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    for threads in thread_counts {
        parallel::set_num_threads(threads);
        let mut times: Vec<(f64, f64)> = (0..reps)
            .map(|_| {
                let (t, cpu) = (Instant::now(), cpu_seconds());
                let (c, _) = tokenize_fragments(&tok, &fragments_path, &opts).expect("valid file");
                let dt = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
                assert_eq!(c, cells, "same output with {threads} threads");
                dt
            })
            .collect();
        times.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (best, cpu) = times[0];
        let rate = stats.fragments as f64 / best;
        let speedup = rate / *base.get_or_insert(rate);
        println!(
            "| {threads} | {best:.3} | {:.3} | {:.2}M | {speedup:.2}x | {cpu:.2} |",
            times[times.len() / 2].0,
            rate / 1e6
        );
    }
    parallel::set_num_threads(0);
    if env_count("ATACFORMER_BENCH_GATHER", 1) != 0 {
        bench_gather(&tok, reps);
    }
}

/// The core of AnnData tokenization: 2,000 cells x 100,000 peaks, 3,000 nonzeros per cell
/// (CSR, unsorted indices), peaks drawn around universe regions.
fn bench_gather(tok: &Tokenizer, reps: usize) {
    let (n_cells, n_peaks, nnz) = (2_000usize, 100_000usize, 3_000usize);
    let mut rng = Rng::new(7);
    let regions = tok.universe().regions();
    let (mut chroms, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n_peaks {
        let i = rng.below(regions.len() as u64) as usize;
        let s = regions.starts()[i].saturating_sub(100) + rng.below(200) as u32;
        chroms.push(regions.chrom(i).to_string());
        starts.push(s);
        ends.push(s + 500);
    }
    // `var` in genomic order, as AnnData files usually are.
    let mut peaks = RegionSet::from_columns(&chroms, &starts, &ends).expect("valid peaks");
    peaks.sort();
    let mut indptr = vec![0i64];
    let mut indices: Vec<i32> = Vec::with_capacity(n_cells * nnz);
    let mut shuffled: Vec<i32> = Vec::with_capacity(n_cells * nnz);
    for _ in 0..n_cells {
        let mut row: Vec<i32> = (0..nnz).map(|_| rng.below(n_peaks as u64) as i32).collect();
        shuffled.extend_from_slice(&row);
        row.sort_unstable();
        indices.extend_from_slice(&row);
        indptr.push(indices.len() as i64);
    }
    let data = vec![1.0f32; indices.len()];
    let best = |f: &mut dyn FnMut()| {
        (0..reps.max(3))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    };
    println!();
    println!(
        "AnnData gather ({n_cells} cells x {n_peaks} peaks, {nnz} nonzeros per cell, CSR), \
         best of {} runs:",
        reps.max(3)
    );
    println!();
    println!("| step | threads | best (ms) |");
    println!("| --- | ---: | ---: |");
    let ms = best(&mut || {
        std::hint::black_box(peak_table(tok, &peaks));
    });
    println!("| peak_table (map 100,000 peaks to universe ids) | 1 | {ms:.1} |");
    let ms = best(&mut || {
        std::hint::black_box(PeakTable::new(tok, &peaks).expect("valid"));
    });
    println!("| PeakTable::new (peak_table and genomic ranks, once per matrix) | 1 | {ms:.1} |");
    let table = PeakTable::new(tok, &peaks).expect("valid");
    let matrix = Csr {
        indptr: &indptr,
        indices: &indices,
        data: Some(&data),
    };
    let no_rows = Csr {
        indptr: &[0i64],
        indices: &indices[..0],
        data: Some(&data[..0]),
    };
    let ms = best(&mut || {
        std::hint::black_box(gather_csr(&table, &no_rows, None).expect("valid"));
    });
    println!("| gather_csr setup (no rows) | 1 | {ms:.1} |");
    let unsorted = Csr {
        indices: &shuffled,
        ..matrix
    };
    for (what, m) in [("sorted", &matrix), ("unsorted", &unsorted)] {
        for threads in [1usize, 2] {
            parallel::set_num_threads(threads);
            let ms = best(&mut || {
                std::hint::black_box(gather_csr(&table, m, None).expect("valid"));
            });
            println!("| gather_csr, {what} indices | {threads} | {ms:.1} |");
        }
    }
    parallel::set_num_threads(0);
}
