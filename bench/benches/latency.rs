//! W3: publish-to-observe latency, one writer thread and one watcher thread,
//! spinning (`try_recv` / kvfeed `try_next`) and parked (blocking receive /
//! kvfeed `next_timeout`). HDR-histogram percentiles are printed and written
//! to `<target>/criterion-extra/w3_latency/<impl>.json`.
//!
//! Not a criterion benchmark: criterion reports means of batches, and this
//! workload's point is the tail. A positional argument filters by name.

use kvfeed_bench::{for_each_impl, settings, threaded, FeedUnderTest, ForEachImpl};

struct W3(Option<String>);

impl ForEachImpl for W3 {
    fn run<F: FeedUnderTest>(&mut self) {
        if self.0.as_deref().is_none_or(|f| F::NAME.contains(f)) {
            threaded::run_latency::<F>();
        }
    }
}

fn main() {
    for_each_impl(&mut W3(settings::name_filter()));
}
