//! A tour of kvfeed: writers and watchers on real threads.
//!
//! Two writers update `user/*` and `order/*` keys. Three watchers follow:
//! one sees everything, one only `user/` keys, and one is deliberately slow,
//! gets lapped, is told exactly how much it missed, and recovers in place
//! from a snapshot. Run with `cargo run --release --example tour`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use kvfeed::{Config, Event, Feed, Kind, RecvError, WatchOptions};

const WRITES_PER_WRITER: u64 = 2_000_000;
const KEYS: u64 = 10_000;

fn main() {
    let feed: Feed<String, u64> =
        Feed::with_config(Config::new().capacity(1 << 14)).expect("valid config");
    println!(
        "kvfeed tour: ring of {} events, 2 writers x {} puts over {} keys, {} cores",
        feed.capacity(),
        WRITES_PER_WRITER,
        2 * KEYS,
        thread::available_parallelism().map_or(1, |n| n.get())
    );

    let start = Arc::new(Barrier::new(5));
    let writers_done = Arc::new(AtomicBool::new(false));

    // Watcher 1: everything, as fast as it can, in batches.
    let all = {
        let mut w = feed.watch(WatchOptions::all());
        let start = start.clone();
        thread::spawn(move || {
            start.wait();
            let (mut got, mut missed, mut buf) = (0u64, 0u64, Vec::with_capacity(1024));
            let t = Instant::now();
            loop {
                buf.clear();
                match w.next_batch(&mut buf, 1024) {
                    Ok(0) => match w.next_timeout(Duration::from_millis(50)) {
                        Ok(Some(_)) => got += 1,
                        Ok(None) => {}
                        Err(RecvError::Lagged(l)) => missed += l.missed,
                        Err(RecvError::Closed) => break,
                    },
                    Ok(n) => got += n as u64,
                    Err(RecvError::Lagged(l)) => missed += l.missed,
                    Err(RecvError::Closed) => break,
                }
            }
            (got, missed, t.elapsed())
        })
    };

    // Watcher 2: only `user/` keys; checks per-key chaining as it goes.
    let users = {
        let mut w = feed.watch(WatchOptions::all().prefix("user/"));
        let start = start.clone();
        thread::spawn(move || {
            start.wait();
            let mut last: HashMap<String, u64> = HashMap::new();
            let (mut got, mut missed, mut chained) = (0u64, 0u64, true);
            for item in &mut w {
                match item {
                    Ok(Event::Change(c)) => {
                        assert!(c.key.starts_with("user/"));
                        if let Some(prev) = last.get(&c.key) {
                            chained &= c.old.as_ref() == Some(prev);
                        }
                        match c.kind {
                            Kind::Delete => last.remove(&c.key),
                            _ => last.insert(c.key.clone(), c.value.unwrap()),
                        };
                        got += 1;
                    }
                    Ok(Event::SnapshotDone { .. }) => {}
                    Err(l) => {
                        missed += l.missed;
                        last.clear();
                    }
                }
            }
            (got, missed, chained)
        })
    };

    // Watcher 3: slow. It will be lapped, told how much it missed, and will
    // recover from a snapshot without being dropped.
    let slow = {
        let mut w = feed.watch(WatchOptions::all());
        let start = start.clone();
        let writers_done = writers_done.clone();
        thread::spawn(move || {
            start.wait();
            let mut report = Vec::new();
            let mut got = 0u64;
            while !writers_done.load(Ordering::Acquire) {
                // A borrowed event holds a reclamation guard until it is dropped,
                // so act on a lap after the match, not inside it.
                let lapped = match w.next_timeout(Duration::from_millis(10)) {
                    Ok(Some(_event)) => {
                        got += 1;
                        thread::sleep(Duration::from_micros(200)); // a slow consumer
                        None
                    }
                    Ok(None) => None,
                    Err(RecvError::Lagged(l)) => Some(l),
                    Err(RecvError::Closed) => break,
                };
                let Some(l) = lapped else { continue };
                if report.len() < 3 {
                    report.push(format!(
                        "  slow watcher lapped: missed {} events, resuming at seq {} -> re-snapshot",
                        l.missed, l.resume_at
                    ));
                }
                w.resnapshot();
                let mut items = 0u64;
                let mut buf = Vec::new();
                'snapshot: loop {
                    buf.clear();
                    match w.next_batch(&mut buf, 4096) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            for ev in &buf {
                                match ev {
                                    Event::SnapshotDone { at, consistent_at } => {
                                        if report.len() < 4 {
                                            report.push(format!(
                                                "  recovered in place: snapshot of {items} live keys at seq {at} (consistent at {consistent_at}), then live"
                                            ));
                                        }
                                        break 'snapshot;
                                    }
                                    Event::Change(_) => items += 1,
                                }
                            }
                        }
                    }
                }
            }
            (got, report, w.lag())
        })
    };

    let t = Instant::now();
    let writers: Vec<_> = ["user", "order"]
        .into_iter()
        .map(|kind| {
            let feed = feed.clone();
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let keys: Vec<String> = (0..KEYS).map(|i| format!("{kind}/{i}")).collect();
                let mut events = 0u64;
                for i in 0..WRITES_PER_WRITER {
                    let key = &keys[(i.wrapping_mul(0x9E37_79B9) % KEYS) as usize];
                    if i % 10 == 9 {
                        // Deleting an absent key emits nothing.
                        events += feed.delete(key.as_str()).unwrap().is_some() as u64;
                    } else {
                        feed.put(key.clone(), i).unwrap();
                        events += 1;
                    }
                }
                events
            })
        })
        .collect();
    let events: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let write_time = t.elapsed();
    writers_done.store(true, Ordering::Release);
    let head = feed.head();
    feed.close();

    let (all_got, all_missed, all_time) = all.join().unwrap();
    let (user_got, user_missed, chained) = users.join().unwrap();
    let (slow_got, report, slow_lag) = slow.join().unwrap();

    println!(
        "writers: {events} events in {write_time:.2?} = {:.2} M events/s ({} seqs given up under contention, published as skip markers)",
        events as f64 / write_time.as_secs_f64() / 1e6,
        head - events
    );
    println!(
        "watcher 'all':   received {all_got}, told of {all_missed} missed seqs (received + missed = {} of {head} seqs), {:.2} M events/s",
        all_got + all_missed,
        all_got as f64 / all_time.as_secs_f64() / 1e6
    );
    println!(
        "watcher 'user/': received {user_got}, told of {user_missed} missed, per-key old/value chain intact: {chained}"
    );
    println!("watcher 'slow':  received {slow_got} before the writers stopped; {slow_lag} behind at the end");
    for line in report {
        println!("{line}");
    }
    // Every seq was either received, reported missed, or a skip marker.
    assert!(
        all_got + all_missed <= head && all_got + all_missed + (head - events) >= head,
        "no silent loss"
    );
    assert!(chained);
}
