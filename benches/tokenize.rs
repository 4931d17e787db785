//! Criterion benches of the core: building a universe index and tokenizing region sets,
//! in memory and streamed from a BED file.
//!
//! `cargo bench -p atacformer-core --bench tokenize`. Data is synthetic: regions spread
//! uniformly over 24 chromosomes of 100 Mb, generated at start-up (the BED file goes to
//! the temp folder and is removed at the end).

use std::hint::black_box;

use atacformer_core::rng::SplitMix64;
use atacformer_core::{RegionSet, SpecialTokens, Tokenizer, TokenizerType, Universe};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn regions(n: usize, width: (u32, u32), seed: u64, unique: bool) -> RegionSet {
    let mut rng = SplitMix64::new(seed);
    let names: Vec<String> = (1..=24).map(|i| format!("chr{i}")).collect();
    let mut rows: Vec<(usize, u32, u32)> = (0..n)
        .map(|_| {
            let c = (rng.next_u64() % 24) as usize;
            let w = width.0 + (rng.next_u64() % u64::from(width.1 - width.0)) as u32;
            let s = (rng.next_u64() % 100_000_000) as u32;
            (c, s, s + w)
        })
        .collect();
    if unique {
        rows.sort_unstable();
        rows.dedup();
    }
    let chroms: Vec<&str> = rows.iter().map(|r| names[r.0].as_str()).collect();
    let starts: Vec<u32> = rows.iter().map(|r| r.1).collect();
    let ends: Vec<u32> = rows.iter().map(|r| r.2).collect();
    RegionSet::from_columns(&chroms, &starts, &ends).expect("generated regions are valid")
}

fn bench(c: &mut Criterion) {
    let universe = regions(1_000_000, (200, 1500), 1, true);
    let queries = regions(1_000_000, (100, 1000), 2, false);
    let mut sorted = queries.clone();
    sorted.sort();
    let tok = Tokenizer::new(
        Universe::from_regions(universe.clone()).expect("valid universe"),
        SpecialTokens::default(),
        TokenizerType::Bits,
    )
    .expect("fits");

    let mut g = c.benchmark_group("universe");
    g.sample_size(10);
    g.throughput(Throughput::Elements(universe.len() as u64));
    g.bench_function("build_index_1m", |b| {
        b.iter(|| Universe::from_regions(black_box(universe.clone())))
    });
    g.finish();

    let mut g = c.benchmark_group("tokenize");
    g.sample_size(10);
    g.throughput(Throughput::Elements(queries.len() as u64));
    g.bench_function("random_order_1m", |b| {
        b.iter(|| tok.tokenize_set::<i64>(black_box(&queries)))
    });
    g.bench_function("sorted_1m", |b| {
        b.iter(|| tok.tokenize_set::<i64>(black_box(&sorted)))
    });
    let bed = std::env::temp_dir().join(format!("atacformer-bench-{}.bed", std::process::id()));
    queries.to_bed(&bed).expect("temp dir is writable");
    g.bench_function("bed_path_random_order_1m", |b| {
        b.iter(|| tok.tokenize_bed::<i64>(black_box(&bed)))
    });
    g.finish();
    let _ = std::fs::remove_file(&bed);
}

criterion_group!(benches, bench);
criterion_main!(benches);
