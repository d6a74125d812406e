//! A small fixed workload for `bench/callgrind.sh`: instructions per put and
//! per delivered event, counted by callgrind with collection switched on
//! only inside the `measured_*` functions (`--collect-atstart=no
//! --toggle-collect='*measured_*'`), so building the store, prefilling and
//! warming up are not counted.
//!
//! ```text
//! instr put   IMPL ROUNDS   # ROUNDS x 1024 puts, no watcher, 100k keys
//! instr drain IMPL ROUNDS   # ROUNDS x (1024 puts, not counted; drain 1 watcher, counted)
//! ```
//!
//! IMPL is an implementation name of the suite: `kvfeed` (drains with
//! `drain_with`), `kvfeed(try_next-per-event)` (one `try_next` per event),
//! `mutex+vecdeque` (copies a batch under one lock),
//! `mutex+vecdeque(lock-per-event)`, `dashmap+tokio-broadcast`, ...
//! Setup for every mode: a store with 100k keys written once (ring / buffer
//! capacity 65536, the suite's full size), then warm-up: 2 x 65536 puts on
//! the uniform key sequence (the ring lapped twice, reclamation in steady
//! state), and for `drain` 64 rounds of put + drain. The script runs two
//! ROUNDS values and divides the difference, so whatever a measured
//! function costs once (first touch, a pending batch of retirements) drops
//! out. Without valgrind the binary just runs (CI smoke).

use std::hint::black_box;

use kvfeed_bench::keys::{self, Dist};
use kvfeed_bench::kvfeed_impl::KvFeedPerEvent;
use kvfeed_bench::peers::mutex_ring::MutexRingPerEvent;
use kvfeed_bench::settings::Sizes;
use kvfeed_bench::{for_each_impl, FeedUnderTest, ForEachImpl};

const KEYS: u64 = 100_000;
const BATCH: usize = 1024;

/// The counted puts.
#[inline(never)]
fn measured_puts<F: FeedUnderTest>(feed: &F, keys: &[u64], pos: &mut usize, n: usize) {
    let mask = keys.len() - 1;
    for i in 0..n {
        feed.put(keys[*pos & mask], i as u64);
        *pos += 1;
    }
}

/// The counted drain of one watcher.
#[inline(never)]
fn measured_drain<F: FeedUnderTest>(w: &mut F::Watcher) -> u64 {
    let d = F::drain(w);
    d.received ^ d.checksum.rotate_left(17)
}

/// Puts that are not counted (setup and warm-up).
#[inline(never)]
fn setup_puts<F: FeedUnderTest>(feed: &F, keys: &[u64], pos: &mut usize, n: usize) {
    let mask = keys.len() - 1;
    for i in 0..n {
        feed.put(keys[*pos & mask], i as u64);
        *pos += 1;
    }
}

/// A drain that is not counted (warm-up).
#[inline(never)]
fn setup_drain<F: FeedUnderTest>(w: &mut F::Watcher) -> u64 {
    F::drain(w).received
}

struct Run {
    mode: String,
    name: String,
    rounds: usize,
    done: bool,
}

impl ForEachImpl for Run {
    fn run<F: FeedUnderTest>(&mut self) {
        if F::NAME != self.name || self.done {
            return;
        }
        self.done = true;
        let ring = Sizes::FULL.ring_capacity;
        let keys = keys::sequence(Dist::Uniform, KEYS, 1 << 20, 9);
        let feed = F::new(ring, Sizes::FULL.channel_capacity);
        for k in 0..KEYS {
            feed.put(k, k);
        }
        let mut pos = 0usize;
        setup_puts(&feed, &keys, &mut pos, 2 * ring);
        match self.mode.as_str() {
            "put" => {
                measured_puts(&feed, &keys, &mut pos, self.rounds * BATCH);
                println!("{} put: {} puts", F::NAME, self.rounds * BATCH);
            }
            "drain" => {
                let mut w = feed.watch();
                let mut got = 0u64;
                for _ in 0..64 {
                    setup_puts(&feed, &keys, &mut pos, BATCH);
                    got += setup_drain::<F>(&mut w);
                }
                assert_eq!(got, 64 * BATCH as u64, "{}: warm-up drains", F::NAME);
                let mut check = 0u64;
                for _ in 0..self.rounds {
                    setup_puts(&feed, &keys, &mut pos, BATCH);
                    check ^= measured_drain::<F>(&mut w);
                }
                black_box(check);
                // Everything was read: nothing left behind.
                assert_eq!(setup_drain::<F>(&mut w), 0, "{}", F::NAME);
                println!("{} drain: {} events", F::NAME, self.rounds * BATCH);
            }
            other => panic!("unknown mode {other:?} (put | drain)"),
        }
        black_box(&feed);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        eprintln!("usage: instr put|drain IMPL ROUNDS");
        std::process::exit(2);
    }
    let mut run = Run {
        mode: args[0].clone(),
        name: args[1].clone(),
        rounds: args[2].parse().expect("ROUNDS is a number"),
        done: false,
    };
    for_each_impl(&mut run);
    run.run::<KvFeedPerEvent>();
    run.run::<MutexRingPerEvent>();
    assert!(run.done, "no implementation named {:?}", args[1]);
}
