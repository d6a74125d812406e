//! W7: oversubscribed, 4 writer threads and 4 watcher threads on a 2-core
//! machine, `w7_runs` runs per implementation (9 in the full mode). Reports
//! delivered events per second (not written), the share the watchers were
//! told they missed, the share lost without a word, and p50/p99
//! publish-to-observe latency, with the median and the spread (min–max)
//! over the runs; writes `<target>/criterion-extra/w7_oversub/<impl>.json`.
//!
//! The runs are interleaved (run 1 of every implementation, then run 2, ...)
//! so that a burst of load from elsewhere on a shared machine falls on all of
//! them rather than on one.
//!
//! Not a criterion benchmark: each run is one fixed-duration experiment and
//! the spread across runs is part of the result. A positional argument
//! filters by name.

use std::collections::HashMap;

use kvfeed_bench::settings::{self, Sizes};
use kvfeed_bench::threaded::{self, OversubRun};
use kvfeed_bench::{for_each_impl, FeedUnderTest, ForEachImpl};

/// Runs one more W7 run of every selected implementation.
struct Round<'a> {
    filter: Option<&'a str>,
    round: usize,
    runs: &'a mut HashMap<&'static str, Vec<OversubRun>>,
}

fn selected<F: FeedUnderTest>(filter: Option<&str>) -> bool {
    F::MULTI_WRITER && filter.is_none_or(|f| F::NAME.contains(f))
}

impl ForEachImpl for Round<'_> {
    fn run<F: FeedUnderTest>(&mut self) {
        if selected::<F>(self.filter) {
            let run = threaded::oversub_printed::<F>(self.round);
            self.runs.entry(F::NAME).or_default().push(run);
        }
    }
}

/// Prints the spread and writes the JSON of every selected implementation.
struct Finish<'a> {
    runs: &'a HashMap<&'static str, Vec<OversubRun>>,
}

impl ForEachImpl for Finish<'_> {
    fn run<F: FeedUnderTest>(&mut self) {
        if !F::MULTI_WRITER {
            println!("w7_oversub {:<26} skipped (one writer by design)", F::NAME);
        } else if let Some(runs) = self.runs.get(F::NAME) {
            threaded::finish_oversub::<F>(runs);
        }
    }
}

fn main() {
    let filter = settings::name_filter();
    let mut runs = HashMap::new();
    for round in 0..Sizes::get().w7_runs {
        for_each_impl(&mut Round {
            filter: filter.as_deref(),
            round,
            runs: &mut runs,
        });
    }
    for_each_impl(&mut Finish { runs: &runs });
}
