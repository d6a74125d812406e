//! The thread-based workloads that criterion's per-iteration model cannot
//! express honestly: W3 (publish-to-observe latency percentiles) and W7
//! (oversubscribed: 4 writers and 4 watchers on 2 cores). Both write JSON to
//! `<target>/criterion-extra/` (one file per implementation) and print a
//! table; `bench/report.py` reads the JSON.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::json::Json;
use crate::keys::{self, Dist};
use crate::settings::{self, Sizes};
use crate::{now_ns, spin_for, FeedUnderTest, Recv};

/// How the W3 watcher waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Polls `try_recv` in a loop (kvfeed: `try_next`).
    Spin,
    /// Parks in the implementation's blocking receive (kvfeed:
    /// `next_timeout`); the writer waits `w3_parked_gap` between events so
    /// the watcher is parked when each one arrives.
    Parked,
}

impl Mode {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Spin => "spin",
            Mode::Parked => "parked",
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a latency histogram, in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }

    fn json(&self) -> Json {
        Json::obj()
            .with("samples", self.count)
            .with("p50_ns", self.p50)
            .with("p99_ns", self.p99)
            .with("p999_ns", self.p999)
            .with("max_ns", self.max)
            .with("mean_ns", self.mean)
    }
}

/// W3: one writer thread (the caller) and one watcher thread; the writer
/// puts one event (value = the time of the put) and waits until the watcher
/// has observed it before the next, so no queue builds up and every sample
/// is one publish-to-observe latency, measured from just before `put` is
/// called until the watcher has the event in hand. The first 10% of samples
/// are warm-up and not recorded.
pub fn latency<F: FeedUnderTest>(mode: Mode, samples: usize, gap: Duration) -> Percentiles {
    let sz = Sizes::get();
    let feed = F::new(sz.ring_capacity, sz.channel_capacity);
    let keys = keys::sequence(Dist::Uniform, sz.keys, sz.key_seq_len, 3);
    let warm = (samples / 10) as u64;
    let total = samples as u64 + warm;
    let acked = AtomicU64::new(0);
    let mut w = feed.watch();
    let hist = thread::scope(|s| {
        let acked = &acked;
        let watcher = s.spawn(move || {
            let mut h = new_histogram();
            let mut seen = 0u64;
            loop {
                let r = match mode {
                    Mode::Spin => F::try_recv(&mut w),
                    Mode::Parked => F::recv_blocking(&mut w),
                };
                match r {
                    Recv::Event { value, .. } => {
                        let lat = now_ns().saturating_sub(value);
                        seen += 1;
                        if seen > warm {
                            h.saturating_record(lat.max(1));
                        }
                        acked.store(seen, Ordering::Release);
                    }
                    Recv::Empty => std::hint::spin_loop(),
                    Recv::Lagged(n) => {
                        panic!("{}: lagged by {n} with one event in flight", F::NAME)
                    }
                    Recv::Closed => return h,
                }
            }
        });
        for i in 0..total {
            wait_for(acked, i, F::NAME);
            if mode == Mode::Parked {
                spin_for(gap);
            }
            feed.put(keys[i as usize % keys.len()], now_ns());
        }
        wait_for(acked, total, F::NAME);
        feed.close();
        watcher.join().expect("W3 watcher panicked")
    });
    Percentiles::of(&hist)
}

fn wait_for(acked: &AtomicU64, n: u64, name: &str) {
    let start = Instant::now();
    while acked.load(Ordering::Acquire) < n {
        std::hint::spin_loop();
        if start.elapsed() > Duration::from_secs(10) {
            panic!("{name}: the watcher did not observe event {n} within 10 s");
        }
    }
}

/// One W7 run.
#[derive(Clone, Debug, Default)]
pub struct OversubRun {
    /// Events the writers wrote (each should reach each of the 4 watchers).
    pub written: u64,
    /// Events the watchers received, summed over the 4.
    pub delivered: u64,
    /// Events the watchers were told they missed, summed.
    pub told_missed: u64,
    /// Deliveries neither received nor reported: `4 × written − delivered −
    /// told_missed`.
    pub lost_silently: u64,
    /// Seconds from the writers' start until the last watcher saw `Closed`.
    pub elapsed_s: f64,
    /// Publish-to-observe latency of the delivered events.
    pub latency: Percentiles,
}

impl OversubRun {
    /// Delivered events per second.
    pub fn delivered_per_s(&self) -> f64 {
        self.delivered as f64 / self.elapsed_s
    }

    fn json(&self) -> Json {
        let slots = (self.written * W7_WATCHERS as u64).max(1) as f64;
        Json::obj()
            .with("written", self.written)
            .with("delivered", self.delivered)
            .with("told_missed", self.told_missed)
            .with("lost_silently", self.lost_silently)
            .with("elapsed_s", self.elapsed_s)
            .with("delivered_per_s", self.delivered_per_s())
            .with("missed_share", self.told_missed as f64 / slots)
            .with("lost_share", self.lost_silently as f64 / slots)
            .with("latency", self.latency.json())
    }
}

/// W7's watcher thread count.
pub const W7_WATCHERS: usize = 4;
/// W7's writer thread count.
pub const W7_WRITERS: usize = 4;

/// W7: 4 writer threads put flat out (uniform keys, value = time of the put)
/// for `duration`, while 4 watcher threads receive with the implementation's
/// blocking receive; then the feed is closed and the watchers drain. Counts
/// what was written, delivered, reported missed and lost without a word.
pub fn oversub<F: FeedUnderTest>(duration: Duration) -> OversubRun {
    let sz = Sizes::get();
    let feed = F::new(sz.ring_capacity, sz.channel_capacity);
    let watchers: Vec<F::Watcher> = (0..W7_WATCHERS).map(|_| feed.watch()).collect();
    let key_seqs: Vec<Vec<u64>> = (0..W7_WRITERS)
        .map(|t| keys::sequence(Dist::Uniform, sz.keys, sz.key_seq_len, 100 + t as u64))
        .collect();
    let stop = AtomicBool::new(false);
    let start_line = Barrier::new(W7_WRITERS + W7_WATCHERS + 1);
    let (written, per_watcher, elapsed) = thread::scope(|s| {
        let feed = &feed;
        let stop = &stop;
        let start_line = &start_line;
        let mut watcher_threads = Vec::new();
        for mut w in watchers {
            watcher_threads.push(s.spawn(move || {
                let mut h = new_histogram();
                let (mut received, mut told) = (0u64, 0u64);
                start_line.wait();
                loop {
                    match F::recv_blocking(&mut w) {
                        Recv::Event { value, .. } => {
                            received += 1;
                            h.saturating_record(now_ns().saturating_sub(value).max(1));
                        }
                        Recv::Lagged(n) => told += n,
                        Recv::Empty => {}
                        Recv::Closed => break,
                    }
                }
                (received, told, h)
            }));
        }
        let mut writer_threads = Vec::new();
        for keys in &key_seqs {
            writer_threads.push(s.spawn(move || {
                let mask = keys.len() - 1;
                let mut i = 0usize;
                start_line.wait();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        feed.put(keys[i & mask], now_ns());
                        i += 1;
                    }
                }
                i as u64
            }));
        }
        start_line.wait();
        let start = Instant::now();
        thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let written: u64 = writer_threads
            .into_iter()
            .map(|t| t.join().expect("W7 writer panicked"))
            .sum();
        feed.close();
        let per_watcher: Vec<(u64, u64, Histogram<u64>)> = watcher_threads
            .into_iter()
            .map(|t| t.join().expect("W7 watcher panicked"))
            .collect();
        (written, per_watcher, start.elapsed())
    });
    let mut run = OversubRun {
        written,
        elapsed_s: elapsed.as_secs_f64(),
        ..OversubRun::default()
    };
    let mut h = new_histogram();
    for (received, told, wh) in &per_watcher {
        run.delivered += received;
        run.told_missed += told;
        run.lost_silently += written.saturating_sub(received + told);
        h.add(wh).expect("same histogram bounds");
    }
    run.latency = Percentiles::of(&h);
    run
}

/// The machine description written into every JSON file.
pub fn machine_json() -> Json {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    Json::obj()
        .with("cores", cores)
        .with("mem_bytes", mem_total_bytes())
        .with(
            "loadavg",
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim(),
        )
        .with("quick", settings::quick())
}

/// Records how a criterion bench binary was run (quick or full, the machine
/// and its load), in `<target>/criterion-extra/mode/<bench>.json`, so the
/// report can tell quick numbers from real ones.
pub fn record_mode(bench: &str) {
    let json = Json::obj()
        .with("bench", bench)
        .with("machine", machine_json())
        .with(
            "unix_time_s",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
    write_extra("mode", bench, &json);
}

/// `MemTotal` from `/proc/meminfo`, in bytes (0 when unknown).
pub fn mem_total_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Writes `json` to `<target>/criterion-extra/<workload>/<impl>.json`.
pub fn write_extra(workload: &str, impl_name: &str, json: &Json) {
    let dir = settings::extra_dir().join(workload);
    let file = dir.join(format!("{impl_name}.json"));
    let result = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, json.render()));
    match result {
        Ok(()) => eprintln!("wrote {}", file.display()),
        Err(e) => eprintln!("could not write {}: {e}", file.display()),
    }
}

/// Runs W3 for `F` in both modes, prints the percentiles and writes the JSON.
pub fn run_latency<F: FeedUnderTest>() {
    let sz = Sizes::get();
    let mut modes = Vec::new();
    for (mode, samples) in [
        (Mode::Spin, sz.w3_samples_spin),
        (Mode::Parked, sz.w3_samples_parked),
    ] {
        let p = latency::<F>(mode, samples, sz.w3_parked_gap);
        println!(
            "w3_latency/{:<7} {:<26} n={:<6} p50={:>8} ns  p99={:>8} ns  p99.9={:>8} ns  max={:>9} ns",
            mode.name(),
            F::NAME,
            p.count,
            p.p50,
            p.p99,
            p.p999,
            p.max
        );
        modes.push((mode, p));
    }
    let mut json = Json::obj()
        .with("workload", "w3_latency")
        .with("impl", F::NAME)
        .with("machine", machine_json())
        .with("parked_gap_ns", sz.w3_parked_gap.as_nanos() as u64);
    for (mode, p) in modes {
        json = json.with(mode.name(), p.json());
    }
    write_extra("w3_latency", F::NAME, &json);
}

/// One W7 run for `F`, printed as one line (run number `r`).
pub fn oversub_printed<F: FeedUnderTest>(r: usize) -> OversubRun {
    let sz = Sizes::get();
    let run = oversub::<F>(sz.w7_duration);
    let slots = (run.written * W7_WATCHERS as u64).max(1) as f64;
    println!(
        "w7_oversub {:<26} run {r}: delivered {:>12.0}/s  written {:>10}  missed(told) {:>5.1}%  lost silently {:>5.1}%  p50 {:>10} ns  p99 {:>11} ns",
        F::NAME,
        run.delivered_per_s(),
        run.written,
        100.0 * run.told_missed as f64 / slots,
        100.0 * run.lost_silently as f64 / slots,
        run.latency.p50,
        run.latency.p99,
    );
    run
}

/// Prints the spread of `F`'s W7 runs (median [min–max] of delivered/s and
/// of p99, lost silently summed) and writes its JSON.
pub fn finish_oversub<F: FeedUnderTest>(runs: &[OversubRun]) {
    if runs.is_empty() {
        return;
    }
    let rates: Vec<f64> = runs.iter().map(OversubRun::delivered_per_s).collect();
    let p99s: Vec<f64> = runs.iter().map(|r| r.latency.p99 as f64).collect();
    let (rm, rlo, rhi) = median_min_max(&rates);
    let (pm, plo, phi) = median_min_max(&p99s);
    let lost: u64 = runs.iter().map(|r| r.lost_silently).sum();
    println!(
        "w7_oversub {:<26} {} runs: delivered/s median {:.0} [{:.0}–{:.0}]  p99 median {:.0} ns [{:.0}–{:.0}]  lost silently {lost}",
        F::NAME,
        runs.len(),
        rm,
        rlo,
        rhi,
        pm,
        plo,
        phi,
    );
    let sz = Sizes::get();
    let json = Json::obj()
        .with("workload", "w7_oversub")
        .with("impl", F::NAME)
        .with("machine", machine_json())
        .with("writers", W7_WRITERS)
        .with("watchers", W7_WATCHERS)
        .with("duration_s", sz.w7_duration.as_secs_f64())
        .with(
            "runs",
            runs.iter().map(OversubRun::json).collect::<Vec<_>>(),
        );
    write_extra("w7_oversub", F::NAME, &json);
}

/// The median, minimum and maximum of `xs` (not empty).
pub fn median_min_max(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}
