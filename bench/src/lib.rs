//! Benchmarks for `kvfeed` against its peers, through one workload trait.
//!
//! Every workload in `benches/` is written once, against [`FeedUnderTest`],
//! and run for kvfeed and for each peer in the same criterion group, so the
//! report shows them side by side (the model is seize's `benches/stack.rs`).
//!
//! | module | what |
//! |---|---|
//! | [`peers`] | the hand-rolled "map + channels" designs kvfeed replaces |
//! | [`kvfeed_impl`] | kvfeed itself behind the trait |
//! | [`keys`] | uniform and Zipf key sequences (deterministic, no `rand`) |
//! | [`settings`] | full vs quick mode, sizes, criterion config, output paths |
//! | [`threaded`] | the thread-based workloads W3 (latency) and W7 (oversubscribed) |
//! | [`reclaim`] | the first engine's reclamation choice: one minimal ring on seize and on crossbeam-epoch |
//! | [`json`] | a tiny JSON writer for the results criterion cannot hold |
//!
//! Every implementation uses the same key and value types (`u64`, `u64`), the
//! same allocator (the system allocator: no `#[global_allocator]` anywhere in
//! this crate), and the same ring / channel capacities ([`settings::Sizes`]).

#![deny(missing_docs)]

use std::time::Duration;

pub mod json;
pub mod keys;
pub mod kvfeed_impl;
pub mod peers;
pub mod reclaim;
pub mod settings;
pub mod threaded;

/// What one receive on a watcher produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// One change event: its key and its new value.
    Event {
        /// The key written.
        key: u64,
        /// The value written (W3/W7 put a timestamp here).
        value: u64,
    },
    /// The watcher was told it missed this many events (kvfeed's `Lagged`,
    /// tokio's `Lagged(n)`, async-broadcast's `Overflowed(n)`, the mutex
    /// ring's cursor check).
    Lagged(u64),
    /// Nothing to read right now.
    Empty,
    /// The feed was closed and everything left has been read.
    Closed,
}

/// The outcome of draining a watcher until it is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Events received.
    pub received: u64,
    /// Events the watcher was told it missed.
    pub missed: u64,
    /// A value derived from every event received, so the reads cannot be
    /// optimised away.
    pub checksum: u64,
}

/// One feed implementation under test: a key-value map whose every write is
/// published to any number of watchers.
///
/// Keys and values are `u64` for every implementation.
pub trait FeedUnderTest: Send + Sync + Sized + 'static {
    /// A registered watcher; dropping it unregisters it.
    type Watcher: Send + 'static;

    /// The name in the report (criterion's function id).
    const NAME: &'static str;

    /// Whether several threads may write at once. `bus` has one writer by
    /// design, so the multi-writer workloads (W5, W7) leave it out.
    const MULTI_WRITER: bool = true;

    /// Whether a watcher is told about every event it did not receive. When
    /// this is false the feed drops events silently (a full per-watcher
    /// channel, a full bus) and [`FeedUnderTest::silently_dropped`] counts
    /// them on the writer's side.
    const TELLS_MISSED: bool;

    /// A feed whose shared ring / broadcast buffer holds `ring_capacity`
    /// events and whose per-watcher channels (if it has any) hold
    /// `channel_capacity` events.
    fn new(ring_capacity: usize, channel_capacity: usize) -> Self;

    /// Writes `value` under `key` and publishes the change.
    fn put(&self, key: u64, value: u64);

    /// Reads the current value of `key`.
    fn get(&self, key: u64) -> Option<u64>;

    /// Registers a watcher that sees every change written from now on.
    fn watch(&self) -> Self::Watcher;

    /// A non-blocking receive.
    fn try_recv(w: &mut Self::Watcher) -> Recv;

    /// A blocking receive: parks the thread until an event arrives, the
    /// watcher is told it lagged, or the feed is closed. Never returns
    /// [`Recv::Empty`].
    fn recv_blocking(w: &mut Self::Watcher) -> Recv;

    /// Receives until the watcher is empty (or closed).
    fn drain(w: &mut Self::Watcher) -> Drained {
        let mut d = Drained::default();
        loop {
            match Self::try_recv(w) {
                Recv::Event { key, value } => {
                    d.received += 1;
                    d.checksum = d.checksum.wrapping_add(key ^ value);
                }
                Recv::Lagged(n) => d.missed += n,
                Recv::Empty | Recv::Closed => return d,
            }
        }
    }

    /// Closes the feed: blocked watchers drain what is left and then get
    /// [`Recv::Closed`]. Writes after `close` are not measured.
    fn close(&self);

    /// Deliveries the writers gave up on without the watcher being told
    /// (counted per watcher: one event dropped for 3 watchers counts 3).
    fn silently_dropped(&self) -> u64 {
        0
    }
}

/// Nanoseconds since a process-wide base instant; W3 and W7 write this as
/// the value so the watcher can compute publish-to-observe latency.
pub fn now_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    base.elapsed().as_nanos() as u64
}

/// Busy-waits for `d` (used to pace W3's writer without a syscall).
pub fn spin_for(d: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Runs `f` with every implementation under test, in report order: kvfeed
/// first, then the peers.
///
/// `f` is a generic "function object" so each call is monomorphised for the
/// implementation (no dynamic dispatch in the measured loops).
pub fn for_each_impl<F: ForEachImpl>(f: &mut F) {
    f.run::<kvfeed_impl::KvFeed>();
    f.run::<peers::mutex_ring::MutexRing>();
    f.run::<peers::dash_tokio::DashTokio>();
    f.run::<peers::papaya_xbeam::PapayaXbeam>();
    f.run::<peers::papaya_abcast::PapayaAbcast>();
    f.run::<peers::bus_feed::BusFeed>();
}

/// A workload that can be run for any implementation; see [`for_each_impl`].
pub trait ForEachImpl {
    /// Runs the workload for `F`.
    fn run<F: FeedUnderTest>(&mut self);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trait's contract, checked for every implementation: delivery,
    /// lap accounting (told or silently dropped, never unaccounted) and close.
    struct Contract;

    impl ForEachImpl for Contract {
        fn run<F: FeedUnderTest>(&mut self) {
            let feed = F::new(8, 8);
            let mut w = feed.watch();
            assert_eq!(F::try_recv(&mut w), Recv::Empty, "{}", F::NAME);
            for k in 0..5 {
                feed.put(k, k * 10);
            }
            assert_eq!(feed.get(3), Some(30), "{}", F::NAME);
            let d = F::drain(&mut w);
            assert_eq!((d.received, d.missed), (5, 0), "{}", F::NAME);

            let silent_before = feed.silently_dropped();
            for k in 0..32 {
                feed.put(k, k);
            }
            let d = F::drain(&mut w);
            let silent = feed.silently_dropped() - silent_before;
            assert_eq!(
                d.received + d.missed + silent,
                32,
                "{}: {d:?}, silent {silent}",
                F::NAME
            );
            assert!(d.received >= 1, "{}: a lapped watcher still reads", F::NAME);
            assert_eq!(F::TELLS_MISSED, silent == 0, "{}", F::NAME);

            feed.put(100, 1);
            feed.close();
            assert_eq!(
                F::recv_blocking(&mut w),
                Recv::Event { key: 100, value: 1 },
                "{}: drains before Closed",
                F::NAME
            );
            assert_eq!(F::recv_blocking(&mut w), Recv::Closed, "{}", F::NAME);
        }
    }

    #[test]
    fn every_implementation_keeps_the_contract() {
        for_each_impl(&mut Contract);
        Contract.run::<peers::mutex_ring::MutexRingPerEvent>();
        Contract.run::<kvfeed_impl::KvFeedPerEvent>();
    }
}
