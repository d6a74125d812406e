//! Memory: resident set size (RSS) per live key, and RSS over a long run of
//! puts with a lapped watcher.
//!
//! ```text
//! cargo run --release -p kvfeed-bench --example memory                 # = keys 1000000
//! cargo run --release -p kvfeed-bench --example memory -- keys [N]
//! cargo run --release -p kvfeed-bench --example memory -- flat [PUTS] [KEYS] [IMPL]
//! ```
//!
//! `keys N`: for each implementation, in a fresh process of its own (this
//! binary started again with `child-keys IMPL N`), reads `VmRSS` from
//! `/proc/self/status`, builds the store and writes `N` distinct `u64 -> u64`
//! keys (0..N, each once, no watcher), reads `VmRSS` again and reports
//! `(after - before) / N` bytes per live key. Implementations: kvfeed, a
//! plain `std::collections::HashMap<u64, u64>` (the floor), and every peer of
//! the suite (each with its ring / broadcast buffer of the bench's full
//! capacity, 65536, the same as kvfeed's ring; the ring's fixed cost is part
//! of the figure, about 1-3 bytes per key at 1M keys).
//!
//! `flat PUTS KEYS IMPL` (defaults 10_000_000, 100_000, kvfeed): one
//! watcher that reads rarely (16 reads every `PUTS / 100` puts, so it is
//! lapped again and again and told `Lagged`), and `PUTS` puts on `KEYS`
//! uniform keys from the same thread; prints RSS every `PUTS / 20` puts and
//! says whether it stayed flat after a warm-up (the first 10%, at least 10
//! puts per key when that is under half the run): growth at most
//! max(4 MiB, 2%) over the first sample after the warm-up. Issue 9 asks for
//! 1e8 puts.
//!
//! Both modes print a table and write JSON to
//! `<target>/criterion-extra/memory/{keys,flat}.json` for `bench/report.py`.
//! Linux only (`/proc`). Same allocator as everywhere in the suite: the
//! system one.

use std::hint::black_box;
use std::process::Command;

use kvfeed_bench::json::Json;
use kvfeed_bench::keys::{self, Dist};
use kvfeed_bench::kvfeed_impl::KvFeedRecords;
use kvfeed_bench::settings::Sizes;
use kvfeed_bench::threaded::{mem_total_bytes, write_extra};
use kvfeed_bench::{for_each_impl, FeedUnderTest, ForEachImpl, Recv};

/// The plain map every figure is compared with.
const STD_HASHMAP: &str = "std::HashMap<u64,u64>";

/// The machine, for the JSON (no "quick" flag: this example always runs the
/// sizes it is given).
fn machine_json() -> Json {
    Json::obj()
        .with(
            "cores",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        )
        .with("mem_bytes", mem_total_bytes())
        .with(
            "loadavg",
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim(),
        )
}

/// `VmRSS` of this process in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("a VmRSS line in /proc/self/status")
}

/// Child mode: builds `name` with `n` keys and prints `before after`.
struct ChildKeys {
    name: String,
    n: u64,
    done: bool,
}

impl ForEachImpl for ChildKeys {
    fn run<F: FeedUnderTest>(&mut self) {
        if F::NAME != self.name {
            return;
        }
        let ring = Sizes::FULL.ring_capacity;
        let before = rss_bytes();
        let feed = F::new(ring, Sizes::FULL.channel_capacity);
        for k in 0..self.n {
            feed.put(k, k);
        }
        let after = rss_bytes();
        assert_eq!(feed.get(self.n / 2), Some(self.n / 2), "{}", F::NAME);
        black_box(&feed);
        println!("{before} {after}");
        self.done = true;
    }
}

fn child_keys(name: &str, n: u64) {
    if name == STD_HASHMAP {
        let before = rss_bytes();
        let mut map = std::collections::HashMap::<u64, u64>::new();
        for k in 0..n {
            map.insert(k, k);
        }
        let after = rss_bytes();
        assert_eq!(map.get(&(n / 2)), Some(&(n / 2)));
        black_box(&map);
        println!("{before} {after}");
        return;
    }
    let mut c = ChildKeys {
        name: name.to_string(),
        n,
        done: false,
    };
    for_each_impl(&mut c);
    c.run::<KvFeedRecords>();
    assert!(c.done, "no implementation named {name:?}");
}

/// Collects the implementation names, in report order.
struct Names(Vec<&'static str>);

impl ForEachImpl for Names {
    fn run<F: FeedUnderTest>(&mut self) {
        self.0.push(F::NAME);
    }
}

fn keys_mode(n: u64) {
    let exe = std::env::current_exe().expect("this executable's path");
    let mut names = Names(Vec::new());
    for_each_impl(&mut names);
    let mut order = names.0.clone();
    // kvfeed's record engine (strings and user types use it) beside the
    // word engine that `u64 -> u64` gets.
    order.insert(1, KvFeedRecords::NAME);
    order.insert(2, STD_HASHMAP);
    println!("RSS per live u64 -> u64 key, {n} keys, each implementation in a fresh process");
    println!(
        "{:<28} {:>14} {:>14} {:>10} {:>22}",
        "impl", "RSS before", "RSS after", "B/key", "B/key beside k+v (16)"
    );
    let mut rows = Vec::new();
    for name in order {
        let out = Command::new(&exe)
            .args(["child-keys", name, &n.to_string()])
            .output()
            .expect("start a child process");
        let text = String::from_utf8_lossy(&out.stdout);
        let nums: Vec<u64> = text
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        if !out.status.success() || nums.len() != 2 {
            eprintln!(
                "{name}: child failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        let (before, after) = (nums[0], nums[1]);
        let per_key = after.saturating_sub(before) as f64 / n as f64;
        println!(
            "{name:<28} {before:>14} {after:>14} {per_key:>10.1} {:>22.1}",
            per_key - 16.0
        );
        rows.push(
            Json::obj()
                .with("impl", name)
                .with("rss_before", before)
                .with("rss_after", after)
                .with("bytes_per_key", per_key),
        );
    }
    let json = Json::obj()
        .with("impl", "keys")
        .with("keys", n)
        .with("ring_capacity", Sizes::FULL.ring_capacity)
        .with("machine", machine_json())
        .with("results", rows);
    write_extra("memory", "keys", &json);
}

/// Flat mode for one implementation.
struct Flat {
    name: String,
    puts: u64,
    keys: u64,
    done: bool,
}

impl ForEachImpl for Flat {
    fn run<F: FeedUnderTest>(&mut self) {
        if F::NAME != self.name {
            return;
        }
        self.done = true;
        let ring = Sizes::FULL.ring_capacity;
        let seq = keys::sequence(Dist::Uniform, self.keys, 1 << 20, 7);
        let mask = seq.len() - 1;
        let feed = F::new(ring, Sizes::FULL.channel_capacity);
        let mut w = feed.watch();
        let (puts, sample_every, read_every) =
            (self.puts, (self.puts / 20).max(1), (self.puts / 100).max(1));
        let (mut received, mut told) = (0u64, 0u64);
        let mut samples: Vec<(u64, u64)> = vec![(0, rss_bytes())];
        println!(
            "{}: {puts} puts on {} uniform keys, ring {ring}, one watcher reading 16 events every {read_every} puts",
            F::NAME,
            self.keys
        );
        println!("{:>12} {:>14}", "puts", "RSS bytes");
        println!("{:>12} {:>14}", 0, samples[0].1);
        for i in 0..puts {
            feed.put(seq[i as usize & mask], i);
            let done = i + 1;
            if done % read_every == 0 {
                for _ in 0..16 {
                    match F::try_recv(&mut w) {
                        Recv::Event { .. } => received += 1,
                        Recv::Lagged(n) => told += n,
                        Recv::Empty | Recv::Closed => break,
                    }
                }
            }
            if done % sample_every == 0 {
                let rss = rss_bytes();
                println!("{done:>12} {rss:>14}");
                samples.push((done, rss));
            }
        }
        // Flat: after a warm-up (the first 10%, and at least 10 puts per key
        // when that is under half the run: every key written, ring full),
        // RSS grows by at most max(4 MiB, 2%) over the first sample after it.
        let warm = (puts / 10).max((10 * self.keys).min(puts / 2));
        let base = samples
            .iter()
            .find(|(p, _)| *p >= warm)
            .map_or(samples[0].1, |s| s.1);
        let peak = samples
            .iter()
            .filter(|(p, _)| *p >= warm)
            .map(|s| s.1)
            .max()
            .unwrap_or(base);
        let allowed = (4u64 << 20).max(base / 50);
        let growth = peak.saturating_sub(base);
        let flat = growth <= allowed;
        println!(
            "{}: RSS after the warm-up ({warm} puts) {base} B, peak after it {peak} B, growth {growth} B (allowed {allowed}): {}; watcher read {received}, told missed {told}",
            F::NAME,
            if flat { "FLAT" } else { "NOT FLAT" }
        );
        let json = Json::obj()
            .with("impl", "flat")
            .with("feed", F::NAME)
            .with("puts", puts)
            .with("keys", self.keys)
            .with("ring_capacity", ring)
            .with("warm_up_puts", warm)
            .with("base_rss", base)
            .with("peak_rss", peak)
            .with("growth", growth)
            .with("allowed_growth", allowed)
            .with("flat", flat)
            .with("watcher_received", received)
            .with("watcher_told_missed", told)
            .with("machine", machine_json())
            .with(
                "samples",
                samples
                    .iter()
                    .map(|&(p, r)| Json::obj().with("puts", p).with("rss", r))
                    .collect::<Vec<_>>(),
            );
        write_extra("memory", "flat", &json);
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    match args.get(i) {
        None => default,
        Some(a) => a
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("argument {i} ({a:?}) is not a number")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("keys") => keys_mode(arg(&args, 1, 1_000_000)),
        Some("child-keys") => child_keys(&args[1], arg(&args, 2, 1_000_000)),
        Some("flat") => {
            let name = args.get(3).cloned().unwrap_or_else(|| "kvfeed".into());
            let mut f = Flat {
                name: name.clone(),
                puts: arg(&args, 1, 10_000_000),
                keys: arg(&args, 2, 100_000),
                done: false,
            };
            for_each_impl(&mut f);
            assert!(f.done, "no implementation named {name:?}");
        }
        Some(other) => {
            eprintln!("unknown mode {other:?}: use `keys [N]` or `flat [PUTS] [KEYS] [IMPL]`");
            std::process::exit(2);
        }
    }
}
