//! Waiting for another thread's few-instruction window (a write in flight
//! on the same key, a migration copying one slot, a publisher of the same
//! ring slot a lap apart): spin briefly, then yield the core, since on a
//! small machine the thread we wait for may need ours to run.

pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff { step: 0 }
    }

    pub(crate) fn snooze(&mut self) {
        #[cfg(kvfeed_loom)]
        {
            // Under loom every wait is a yield, so the model explores the
            // other thread's progress instead of spinning.
            self.step += 1;
            loom::thread::yield_now();
        }
        #[cfg(not(kvfeed_loom))]
        {
            if self.step < 6 {
                for _ in 0..1u32 << self.step {
                    std::hint::spin_loop();
                }
                self.step += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}
