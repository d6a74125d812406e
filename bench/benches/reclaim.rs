//! The reclamation choice: one minimal ring of boxed events (overwrite and
//! retire) on seize and on crossbeam-epoch, in one group per operation.
//!
//! - `reclaim/put`: one writer overwrites slots and retires the old boxes.
//! - `reclaim/read`: a guard per single-slot read.
//! - `reclaim/read_batch64`: one guard per 64 reads (a watcher's drain).
//! - `reclaim/put_with_reader`: the writer's put while another thread reads
//!   batches continuously (guards held and released all the time).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use kvfeed_bench::reclaim::{EpochRing, ReclaimRing, SeizeRing};
use kvfeed_bench::settings::{self, Sizes};

fn config() -> Criterion {
    kvfeed_bench::threaded::record_mode("reclaim");
    let (warm_up, measurement, samples) = settings::criterion_timing();
    Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .sample_size(samples)
}

fn filled<R: ReclaimRing>(cap: usize) -> R {
    let r = R::new(cap);
    for s in 0..cap as u64 {
        r.put(s, s);
    }
    r
}

fn put<R: ReclaimRing>(g: &mut BenchmarkGroup<'_, WallTime>, cap: usize) {
    let ring: R = filled(cap);
    let mut seq = cap as u64;
    g.bench_function(R::NAME, |b| {
        b.iter(|| {
            ring.put(seq, seq);
            seq += 1;
        })
    });
}

fn read<R: ReclaimRing>(g: &mut BenchmarkGroup<'_, WallTime>, cap: usize) {
    let ring: R = filled(cap);
    let mut seq = 0u64;
    g.bench_function(R::NAME, |b| {
        b.iter(|| {
            seq += 1;
            black_box(ring.read(seq))
        })
    });
}

fn read_batch<R: ReclaimRing>(g: &mut BenchmarkGroup<'_, WallTime>, cap: usize) {
    let ring: R = filled(cap);
    let mut seq = 0u64;
    g.bench_function(R::NAME, |b| {
        b.iter(|| {
            seq += 64;
            black_box(ring.read_batch(seq, 64))
        })
    });
}

fn put_with_reader<R: ReclaimRing>(g: &mut BenchmarkGroup<'_, WallTime>, cap: usize) {
    let ring: R = filled(cap);
    let stop = AtomicBool::new(false);
    let mut seq = cap as u64;
    thread::scope(|s| {
        let (ring, stop) = (&ring, &stop);
        let reader = s.spawn(move || {
            let mut from = 0u64;
            let mut acc = 0u64;
            while !stop.load(Ordering::Relaxed) {
                acc = acc.wrapping_add(ring.read_batch(from, 64));
                from += 64;
            }
            acc
        });
        g.bench_function(R::NAME, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    ring.put(seq, seq);
                    seq += 1;
                }
                start.elapsed()
            })
        });
        stop.store(true, Ordering::Relaxed);
        black_box(reader.join().expect("reader panicked"));
    });
}

fn reclaim(c: &mut Criterion) {
    let cap = Sizes::get().ring_capacity;
    type Op = fn(&mut BenchmarkGroup<'_, WallTime>, usize);
    let ops: [(&str, u64, Op, Op); 4] = [
        ("put", 1, put::<SeizeRing>, put::<EpochRing>),
        ("read", 1, read::<SeizeRing>, read::<EpochRing>),
        (
            "read_batch64",
            64,
            read_batch::<SeizeRing>,
            read_batch::<EpochRing>,
        ),
        (
            "put_with_reader",
            1,
            put_with_reader::<SeizeRing>,
            put_with_reader::<EpochRing>,
        ),
    ];
    for (name, elems, seize_op, epoch_op) in ops {
        let mut g = c.benchmark_group(format!("reclaim/{name}"));
        g.throughput(Throughput::Elements(elems));
        seize_op(&mut g, cap);
        epoch_op(&mut g, cap);
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = reclaim
}
criterion_main!(benches);
