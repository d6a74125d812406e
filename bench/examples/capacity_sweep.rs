//! Diagnostic: the writer's cost per put (no watchers, 100k uniform keys) as
//! the ring capacity grows, for kvfeed and the peers. Shows how much of a
//! put is cache misses on what the ring overwrites.
//!
//! `cargo run --release -p kvfeed-bench --example capacity_sweep [NAME] [PUTS] [CAPACITY]`
//!
//! NAME filters implementations by substring; PUTS (default 2e6) and one
//! CAPACITY keep a run short enough for `valgrind --tool=callgrind
//! --cache-sim=yes`.

use std::time::Instant;

use kvfeed_bench::keys::{self, Dist};
use kvfeed_bench::{for_each_impl, FeedUnderTest, ForEachImpl};

struct Sweep {
    capacity: usize,
    keys: Vec<u64>,
    filter: String,
    puts: usize,
}

impl ForEachImpl for Sweep {
    fn run<F: FeedUnderTest>(&mut self) {
        if !F::NAME.contains(self.filter.as_str()) {
            return;
        }
        let feed = F::new(self.capacity, 4096);
        for k in 0..100_000 {
            feed.put(k, k);
        }
        let n = self.puts;
        let mask = self.keys.len() - 1;
        // Warm up: lap the ring twice.
        for i in 0..(2 * self.capacity).max(n / 10) {
            feed.put(self.keys[i & mask], i as u64);
        }
        let start = Instant::now();
        for i in 0..n {
            feed.put(self.keys[i & mask], i as u64);
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "capacity {:>7}  {:<32} {:>8.1} ns/put",
            self.capacity,
            F::NAME,
            ns
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.first().cloned().unwrap_or_default();
    let puts = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let capacities: Vec<usize> = match args.get(2).and_then(|a| a.parse().ok()) {
        Some(c) => vec![c],
        None => vec![1024, 4096, 16384, 65536, 262144],
    };
    let keys = keys::sequence(Dist::Uniform, 100_000, 1 << 20, 7);
    for capacity in capacities {
        for_each_impl(&mut Sweep {
            capacity,
            keys: keys.clone(),
            filter: filter.clone(),
            puts,
        });
    }
}
