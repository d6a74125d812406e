//! The criterion workloads, each run for kvfeed and every peer in one group:
//!
//! - W1 `w1/{uniform,zipf}/K={0,1,4,16,64}`: end-to-end cost per event. Each
//!   iteration puts a batch on 100k keys, then drains every one of K watchers
//!   on the same thread (throughput = events put). Two classes, compared
//!   within their class by `bench/report.py` (issue 9): per-event reads
//!   (`kvfeed(try_next-per-event)`, `mutex+vecdeque(lock-per-event)`,
//!   tokio's `try_recv`, crossbeam's `try_recv`, async-broadcast, bus) and
//!   batch reads (`kvfeed`, which drains with `drain_with`, and
//!   `mutex+vecdeque`, which copies everything available into the watcher's
//!   buffer under one lock). Same keys, values, allocator and capacities for
//!   all.
//! - W2 `w2/N={0,16,256,4096}`: writer cost per put with N registered
//!   watchers that never read (their channels fill / they get lapped).
//! - W4 `w4_lapped_drain`: a slow watcher lapped 3× per iteration; the time
//!   of its drain (lap detection + reading what is left) is measured, and
//!   `delivered + missed == written` is asserted (for the peers that drop
//!   silently: `delivered + dropped == written`).
//! - W5 `w5/{different_keys,hot_key}`: two writer threads, no watchers;
//!   time per put (both threads together).
//! - W6 `w6_get_under_writer`: `get` on 1e6 keys while a writer thread puts.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use kvfeed_bench::keys::{self, Dist};
use kvfeed_bench::kvfeed_impl::{KvFeedPerEvent, KvFeedRecords};
use kvfeed_bench::peers::mutex_ring::MutexRingPerEvent;
use kvfeed_bench::settings::{self, Sizes};
use kvfeed_bench::{for_each_impl, FeedUnderTest, ForEachImpl};

fn config() -> Criterion {
    kvfeed_bench::threaded::record_mode("feed");
    let (warm_up, measurement, samples) = settings::criterion_timing();
    Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .sample_size(samples)
}

/// A feed filled with one value for each of `n` keys.
fn populated<F: FeedUnderTest>(ring: usize, channel: usize, n: u64) -> F {
    let feed = F::new(ring, channel);
    for k in 0..n {
        feed.put(k, k);
    }
    feed
}

/// Walks a precomputed key sequence (length a power of two).
struct KeyCursor<'a> {
    keys: &'a [u64],
    pos: usize,
}

impl KeyCursor<'_> {
    #[inline]
    fn next(&mut self) -> u64 {
        let k = self.keys[self.pos];
        self.pos = (self.pos + 1) & (self.keys.len() - 1);
        k
    }
}

struct W1<'a, 'g> {
    group: &'a mut BenchmarkGroup<'g, WallTime>,
    group_name: &'a str,
    keys: &'a [u64],
    watchers: usize,
    sz: Sizes,
}

impl ForEachImpl for W1<'_, '_> {
    fn run<F: FeedUnderTest>(&mut self) {
        if !settings::wanted(&format!("{}/{}", self.group_name, F::NAME)) {
            return;
        }
        let sz = self.sz;
        let feed: F = populated(sz.ring_capacity, sz.channel_capacity, sz.keys);
        let mut ws: Vec<F::Watcher> = (0..self.watchers).map(|_| feed.watch()).collect();
        let mut keys = KeyCursor {
            keys: self.keys,
            pos: 0,
        };
        let batch = sz.w1_batch as u64;
        let mut value = 0u64;
        self.group.bench_function(F::NAME, |b| {
            b.iter(|| {
                for _ in 0..batch {
                    feed.put(keys.next(), value);
                    value += 1;
                }
                let mut sum = 0u64;
                for w in ws.iter_mut() {
                    let d = F::drain(w);
                    assert!(
                        d.received == batch && d.missed == 0,
                        "{}: W1 watcher got {} of {batch} (missed {})",
                        F::NAME,
                        d.received,
                        d.missed
                    );
                    sum ^= d.checksum;
                }
                black_box(sum)
            })
        });
    }
}

fn w1(c: &mut Criterion) {
    let sz = Sizes::get();
    for dist in [Dist::Uniform, Dist::Zipf] {
        let keys = keys::sequence(dist, sz.keys, sz.key_seq_len, 1);
        for &k in sz.w1_watchers {
            let group_name = format!("w1/{}/K={k}", dist.name());
            let mut group = c.benchmark_group(&group_name);
            group.throughput(Throughput::Elements(sz.w1_batch as u64));
            let mut w1 = W1 {
                group: &mut group,
                group_name: &group_name,
                keys: &keys,
                watchers: k,
                sz,
            };
            for_each_impl(&mut w1);
            w1.run::<KvFeedPerEvent>();
            w1.run::<MutexRingPerEvent>();
            group.finish();
        }
    }
}

struct W2<'a, 'g> {
    group: &'a mut BenchmarkGroup<'g, WallTime>,
    keys: &'a [u64],
    watchers: usize,
    sz: Sizes,
}

impl ForEachImpl for W2<'_, '_> {
    fn run<F: FeedUnderTest>(&mut self) {
        if !settings::wanted(&format!("w2/N={}/{}", self.watchers, F::NAME)) {
            return;
        }
        let sz = self.sz;
        let feed: F = populated(sz.ring_capacity, sz.channel_capacity, sz.keys);
        let ws: Vec<F::Watcher> = (0..self.watchers).map(|_| feed.watch()).collect();
        let mut keys = KeyCursor {
            keys: self.keys,
            pos: 0,
        };
        let mut value = 0u64;
        let mut puts = 0u64;
        self.group.bench_function(F::NAME, |b| {
            b.iter(|| {
                feed.put(keys.next(), value);
                value += 1;
                puts += 1;
            })
        });
        let dropped = feed.silently_dropped();
        if dropped > 0 {
            eprintln!(
                "  note: {} with {} idle watchers dropped {:.1}% of deliveries silently",
                F::NAME,
                self.watchers,
                100.0 * dropped as f64 / (puts.max(1) * self.watchers as u64) as f64
            );
        }
        drop(ws);
    }
}

fn w2(c: &mut Criterion) {
    let sz = Sizes::get();
    let keys = keys::sequence(Dist::Uniform, sz.keys, sz.key_seq_len, 2);
    for &n in sz.w2_watchers {
        let mut group = c.benchmark_group(format!("w2/N={n}"));
        group.throughput(Throughput::Elements(1));
        let mut w2 = W2 {
            group: &mut group,
            keys: &keys,
            watchers: n,
            sz,
        };
        for_each_impl(&mut w2);
        // Beside kvfeed, not a peer: the engine strings and user types get.
        w2.run::<KvFeedRecords>();
        group.finish();
    }
}

struct W4<'a, 'g> {
    group: &'a mut BenchmarkGroup<'g, WallTime>,
    keys: &'a [u64],
    sz: Sizes,
}

impl ForEachImpl for W4<'_, '_> {
    fn run<F: FeedUnderTest>(&mut self) {
        if !settings::wanted(&format!("w4_lapped_drain/{}", F::NAME)) {
            return;
        }
        let sz = self.sz;
        let feed: F = populated(sz.w4_capacity, sz.w4_capacity, sz.keys);
        let mut w = feed.watch();
        let mut keys = KeyCursor {
            keys: self.keys,
            pos: 0,
        };
        let written = sz.w4_written as u64;
        let mut value = 0u64;
        self.group.bench_function(F::NAME, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dropped_before = feed.silently_dropped();
                    for _ in 0..written {
                        feed.put(keys.next(), value);
                        value += 1;
                    }
                    let start = Instant::now();
                    let d = F::drain(&mut w);
                    total += start.elapsed();
                    black_box(d.checksum);
                    let silent = feed.silently_dropped() - dropped_before;
                    assert_eq!(
                        d.received + d.missed + silent,
                        written,
                        "{}: delivered {} + told missed {} + silently dropped {silent} != written",
                        F::NAME,
                        d.received,
                        d.missed,
                    );
                    assert!(
                        F::TELLS_MISSED == (silent == 0),
                        "{}: told {} missed, dropped {silent} silently",
                        F::NAME,
                        d.missed
                    );
                }
                total
            })
        });
    }
}

fn w4(c: &mut Criterion) {
    let sz = Sizes::get();
    let keys = keys::sequence(Dist::Uniform, sz.keys, sz.key_seq_len, 4);
    let mut group = c.benchmark_group("w4_lapped_drain");
    let mut w4 = W4 {
        group: &mut group,
        keys: &keys,
        sz,
    };
    for_each_impl(&mut w4);
    w4.run::<KvFeedPerEvent>();
    w4.run::<MutexRingPerEvent>();
    group.finish();
}

struct W5<'a, 'g> {
    group: &'a mut BenchmarkGroup<'g, WallTime>,
    name: &'a str,
    /// One key sequence per writer; `None`: both write key 0.
    keys: Option<&'a [Vec<u64>; 2]>,
    sz: Sizes,
}

impl ForEachImpl for W5<'_, '_> {
    fn run<F: FeedUnderTest>(&mut self) {
        let id = format!("w5/{}/{}", self.name, F::NAME);
        if !F::MULTI_WRITER || !settings::wanted(&id) {
            return;
        }
        let sz = self.sz;
        let feed: F = populated(sz.ring_capacity, sz.channel_capacity, sz.keys);
        let keys = self.keys;
        self.group.bench_function(F::NAME, |b| {
            b.iter_custom(|iters| {
                let per_writer = iters.div_ceil(2);
                let start_line = Barrier::new(3);
                let start = thread::scope(|s| {
                    for t in 0..2 {
                        let (feed, start_line) = (&feed, &start_line);
                        s.spawn(move || {
                            start_line.wait();
                            match keys {
                                Some(seqs) => {
                                    let mut kc = KeyCursor {
                                        keys: &seqs[t],
                                        pos: 0,
                                    };
                                    for i in 0..per_writer {
                                        feed.put(kc.next(), i);
                                    }
                                }
                                None => {
                                    for i in 0..per_writer {
                                        feed.put(0, i);
                                    }
                                }
                            }
                        });
                    }
                    start_line.wait();
                    Instant::now()
                });
                start.elapsed()
            })
        });
    }
}

fn w5(c: &mut Criterion) {
    let sz = Sizes::get();
    let half = sz.keys / 2;
    let seqs: [Vec<u64>; 2] = [0u64, 1].map(|t| {
        keys::sequence(Dist::Uniform, half, sz.key_seq_len, 50 + t)
            .into_iter()
            .map(|k| k + t * half)
            .collect()
    });
    for (name, keys) in [("different_keys", Some(&seqs)), ("hot_key", None)] {
        let mut group = c.benchmark_group(format!("w5/{name}"));
        group.throughput(Throughput::Elements(1));
        for_each_impl(&mut W5 {
            group: &mut group,
            name,
            keys,
            sz,
        });
        group.finish();
    }
}

struct W6<'a, 'g> {
    group: &'a mut BenchmarkGroup<'g, WallTime>,
    read_keys: &'a [u64],
    write_keys: &'a [u64],
    sz: Sizes,
}

impl ForEachImpl for W6<'_, '_> {
    fn run<F: FeedUnderTest>(&mut self) {
        if !settings::wanted(&format!("w6_get_under_writer/{}", F::NAME)) {
            return;
        }
        let sz = self.sz;
        let feed: F = populated(sz.ring_capacity, sz.channel_capacity, sz.keys_w6);
        let stop = AtomicBool::new(false);
        let write_keys = self.write_keys;
        let mut reads = KeyCursor {
            keys: self.read_keys,
            pos: 0,
        };
        let group = &mut *self.group;
        thread::scope(|s| {
            let (feed, stop) = (&feed, &stop);
            let writer = s.spawn(move || {
                let mut kc = KeyCursor {
                    keys: write_keys,
                    pos: 0,
                };
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        feed.put(kc.next(), i);
                        i += 1;
                    }
                }
                i
            });
            group.bench_function(F::NAME, |b| b.iter(|| black_box(feed.get(reads.next()))));
            stop.store(true, Ordering::Relaxed);
            writer.join().expect("W6 writer panicked")
        });
    }
}

fn w6(c: &mut Criterion) {
    let sz = Sizes::get();
    let read_keys = keys::sequence(Dist::Uniform, sz.keys_w6, sz.key_seq_len, 60);
    let write_keys = keys::sequence(Dist::Uniform, sz.keys_w6, sz.key_seq_len, 61);
    let mut group = c.benchmark_group("w6_get_under_writer");
    group.throughput(Throughput::Elements(1));
    for_each_impl(&mut W6 {
        group: &mut group,
        read_keys: &read_keys,
        write_keys: &write_keys,
        sz,
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = w1, w2, w4, w5, w6
}
criterion_main!(benches);
