//! W7: oversubscribed, 4 writer threads and 4 watcher threads on a 2-core
//! machine, several runs per implementation. Reports delivered events per
//! second (not written), the share the watchers were told they missed, the
//! share lost without a word, and p50/p99 publish-to-observe latency; writes
//! `<target>/criterion-extra/w7_oversub/<impl>.json`.
//!
//! Not a criterion benchmark: each run is one fixed-duration experiment and
//! the spread across runs is part of the result. A positional argument
//! filters by name.

use kvfeed_bench::{for_each_impl, settings, threaded, FeedUnderTest, ForEachImpl};

struct W7(Option<String>);

impl ForEachImpl for W7 {
    fn run<F: FeedUnderTest>(&mut self) {
        if self.0.as_deref().is_none_or(|f| F::NAME.contains(f)) {
            threaded::run_oversub::<F>();
        }
    }
}

fn main() {
    for_each_impl(&mut W7(settings::name_filter()));
}
