//! Full vs quick mode, the workloads' sizes, criterion's configuration and
//! where the extra (non-criterion) results are written.
//!
//! Quick mode (`KVFEED_BENCH_QUICK=1`, or criterion's `--test` flag) shrinks
//! every size and sets criterion's warm-up and measurement to a few
//! milliseconds with 10 samples, so that CI can run the whole suite in well
//! under three minutes and the code cannot rot. Quick numbers mean nothing.

use std::path::PathBuf;
use std::time::Duration;

/// True when `KVFEED_BENCH_QUICK` is set to anything but `0`/empty, or, for
/// a bench binary (not an example), when it was started with `--test`
/// (criterion's smoke-test mode, `cargo test --benches`) or without
/// `--bench` (not under `cargo bench`).
pub fn quick() -> bool {
    if let Some(v) = std::env::var_os("KVFEED_BENCH_QUICK") {
        if !v.is_empty() && v != "0" {
            return true;
        }
    }
    // An example (`memory`, `instr`) runs the sizes its arguments give; only
    // the variable above makes it quick (`bench/quick.sh` sets it). Without
    // this, every example counted as quick (it has no `--bench` argument)
    // and `bench/issue9.sh`'s full memory run went to the quick directory.
    let example = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.ends_with("examples")))
        .unwrap_or(false);
    if example {
        return false;
    }
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}

/// The sizes every workload uses, identical for kvfeed and every peer.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Capacity of the shared ring / broadcast buffer (kvfeed's ring, the
    /// mutex ring, tokio broadcast, async-broadcast, bus).
    pub ring_capacity: usize,
    /// Capacity of each per-watcher channel (papaya + crossbeam-channel).
    /// Smaller than the ring because it is paid per watcher: 4096 watchers
    /// × 4096 slots × 48 bytes is already 768 MiB.
    pub channel_capacity: usize,
    /// Distinct keys in W1/W2/W5 (the spec says 100k).
    pub keys: u64,
    /// Distinct keys in W6 (the spec's mixed get/put runs on 1e6 keys).
    pub keys_w6: u64,
    /// Length of the precomputed key sequences.
    pub key_seq_len: usize,
    /// Events written per W1 iteration before every watcher is drained.
    pub w1_batch: usize,
    /// Watcher counts for W1.
    pub w1_watchers: &'static [usize],
    /// Registered (never reading) watcher counts for W2.
    pub w2_watchers: &'static [usize],
    /// Ring / channel capacity in W4 (small, so laps are cheap to produce).
    pub w4_capacity: usize,
    /// Events written per W4 iteration (a multiple of `w4_capacity`: lapped).
    pub w4_written: usize,
    /// W3 samples per peer and mode (the first 10% are discarded as warm-up).
    pub w3_samples_spin: usize,
    /// W3 samples in the parked mode (each costs the pacing gap).
    pub w3_samples_parked: usize,
    /// W3 parked mode: how long the writer waits after the watcher observed
    /// an event before it writes the next one, so the watcher is parked.
    pub w3_parked_gap: Duration,
    /// W7: how long the writers write in one run.
    pub w7_duration: Duration,
    /// W7: runs per implementation (the report gives the spread).
    pub w7_runs: usize,
}

impl Sizes {
    /// The sizes for this run (full or quick).
    pub fn get() -> Sizes {
        if quick() {
            Sizes::QUICK
        } else {
            Sizes::FULL
        }
    }

    /// Full sizes: what the report is made from.
    pub const FULL: Sizes = Sizes {
        ring_capacity: 65536,
        channel_capacity: 4096,
        keys: 100_000,
        keys_w6: 1_000_000,
        key_seq_len: 1 << 20,
        w1_batch: 1024,
        w1_watchers: &[0, 1, 4, 16, 64],
        w2_watchers: &[0, 16, 256, 4096],
        w4_capacity: 1024,
        w4_written: 4096,
        w3_samples_spin: 20_000,
        w3_samples_parked: 5_000,
        w3_parked_gap: Duration::from_micros(200),
        w7_duration: Duration::from_millis(1000),
        w7_runs: 9,
    };

    /// Quick sizes: only so the code runs end to end.
    pub const QUICK: Sizes = Sizes {
        ring_capacity: 4096,
        channel_capacity: 512,
        keys: 10_000,
        keys_w6: 10_000,
        key_seq_len: 1 << 14,
        w1_batch: 256,
        w1_watchers: &[0, 1, 4, 16, 64],
        w2_watchers: &[0, 16, 256, 4096],
        w4_capacity: 256,
        w4_written: 1024,
        w3_samples_spin: 500,
        w3_samples_parked: 100,
        w3_parked_gap: Duration::from_micros(200),
        w7_duration: Duration::from_millis(60),
        w7_runs: 2,
    };
}

/// Criterion timing for this run: quick mode uses a few milliseconds and 10
/// samples; the full mode uses 1 s warm-up and 2 s measurement (about 120
/// benchmarks, so the full suite stays under ~25 minutes on 2 cores).
pub fn criterion_timing() -> (Duration, Duration, usize) {
    if quick() {
        (Duration::from_millis(5), Duration::from_millis(20), 10)
    } else {
        (Duration::from_secs(1), Duration::from_secs(2), 50)
    }
}

/// The cargo target directory this binary was built into: `CARGO_TARGET_DIR`
/// when set, else three levels above the executable (`<target>/release/deps/x`).
pub fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Where W3/W7 and the examples write their JSON: `<target>/criterion-extra/`,
/// or `<target>/quick/criterion-extra/` in quick mode, so a quick run (the
/// test command runs one) never mixes into a full run's report. `bench/quick.sh`
/// sends criterion's own results to `<target>/quick/criterion` likewise.
pub fn extra_dir() -> PathBuf {
    if quick() {
        target_dir().join("quick").join("criterion-extra")
    } else {
        target_dir().join("criterion-extra")
    }
}

/// The positional filter given after `--` (as criterion takes it), if any:
/// the thread-based benches run only implementations whose name contains it.
pub fn name_filter() -> Option<String> {
    // Criterion's options that take a value (the value is not the filter).
    const WITH_VALUE: &[&str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
        "--format",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') && !a.is_empty() {
            return Some(a);
        }
    }
    None
}

/// Whether a criterion benchmark `id` (`group/function`) can match the
/// filter given on the command line, so a filtered run skips the setup
/// (prefilling maps, registering thousands of watchers) of the rest. A filter
/// made of `|`-separated plain names (each may start with `^`) is matched
/// here, alternative by alternative; any other regex metacharacter means
/// everything is set up and criterion does the matching.
pub fn wanted(id: &str) -> bool {
    match name_filter() {
        None => true,
        Some(f) => filter_may_match(&f, id),
    }
}

/// The decision behind [`wanted`], for one filter.
fn filter_may_match(filter: &str, id: &str) -> bool {
    filter.split('|').any(|alt| {
        let (anchored, plain) = match alt.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, alt),
        };
        if plain.contains(|c: char| "\\.*+?()[]{}^$".contains(c)) {
            return true;
        }
        if anchored {
            id.starts_with(plain)
        } else {
            id.contains(plain)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::filter_may_match;

    #[test]
    fn filters_with_alternatives_and_anchors() {
        assert!(filter_may_match(
            "w1/uniform|w2/N=0",
            "w1/uniform/K=4/kvfeed"
        ));
        assert!(filter_may_match("w1/uniform|w2/N=0", "w2/N=0/kvfeed"));
        assert!(!filter_may_match("w1/uniform|w2/N=0", "w1/zipf/K=4/kvfeed"));
        assert!(!filter_may_match("^w2/N=0", "w2/N=4096/x"));
        assert!(filter_may_match("^w2/", "w2/N=4096/x"));
        assert!(!filter_may_match("^w2/", "xw2/"));
        // Anything else regex-like: set everything up, criterion decides.
        assert!(filter_may_match("w[12]", "w5/hot_key/kvfeed"));
    }
}
