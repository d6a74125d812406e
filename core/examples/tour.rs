//! A tour of kvfeed: writers and watchers on real threads.
//!
//! Two writers put and delete `user/*` and `order/*` keys (every tenth write
//! deletes a key written a moment before, so Delete events flow). Four
//! watchers follow:
//!
//! * `all` sees everything, reading in borrowed batches, and counts creates,
//!   updates and deletes;
//! * `user/` sees only `user/` keys and checks, per key, that each event's
//!   `old` is the previous event's value (deletes included);
//! * `slow` is deliberately slow: it is lapped again and again, told each
//!   time exactly how many events it missed, recovers in place from a
//!   snapshot, and at the end its view of the store equals the store;
//! * `resume` saves its cursor every 100,000 events, drops its watcher, and
//!   a new watcher started `.from(saved)` continues at exactly that seq.
//!
//! It prints what each saw and the throughput, and checks that nothing was
//! lost silently. Run with `cargo run --release --example tour`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use kvfeed::{Event, EventRef, Feed, Kind, RecvError, WatchOptions, Watcher};

const WRITES_PER_WRITER: u64 = 1_000_000;
const KEYS: u64 = 10_000;
const CHECKPOINT_EVERY: u64 = 100_000;

/// Events of each kind a watcher received.
#[derive(Default)]
struct Kinds {
    create: u64,
    update: u64,
    delete: u64,
}

impl Kinds {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Create => self.create += 1,
            Kind::Update => self.update += 1,
            Kind::Delete => self.delete += 1,
        }
    }
    fn total(&self) -> u64 {
        self.create + self.update + self.delete
    }
}

fn times(n: u64) -> String {
    match n {
        1 => "once".to_string(),
        n => format!("{n} times"),
    }
}

fn main() {
    let feed: Feed<String, u64> = Feed::new();
    println!(
        "kvfeed tour: ring of {} events, 2 writers x {} writes (1 in 10 a delete) over {} keys, {} cores",
        feed.capacity(),
        WRITES_PER_WRITER,
        2 * KEYS,
        thread::available_parallelism().map_or(1, |n| n.get())
    );

    let start = Arc::new(Barrier::new(6));
    let writers_done = Arc::new(AtomicBool::new(false));

    // Watcher 1: everything, as fast as it can, in borrowed batches.
    let all = {
        let mut w = feed.watch(WatchOptions::all());
        let start = start.clone();
        thread::spawn(move || {
            start.wait();
            let (mut kinds, mut missed, mut last) = (Kinds::default(), 0u64, 0u64);
            let t = Instant::now();
            let mut on_event = |ev: EventRef<'_, String, u64>| {
                let c = ev.as_change().expect("no snapshot here");
                assert!(c.seq() > last, "total order");
                last = c.seq();
                kinds.add(c.kind());
            };
            loop {
                let read = match w.drain_with(4096, &mut on_event) {
                    Ok(0) => match w.next_timeout(Duration::from_millis(50)) {
                        Ok(Some(ev)) => {
                            on_event(ev);
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    },
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                match read {
                    Ok(()) => {}
                    Err(RecvError::Lagged(l)) => missed += l.missed,
                    Err(RecvError::Closed) => break,
                }
            }
            (kinds, missed, t.elapsed())
        })
    };

    // Watcher 2: only `user/` keys; checks per-key chaining as it goes.
    let users = {
        let mut w = feed.watch(WatchOptions::all().prefix("user/"));
        let start = start.clone();
        thread::spawn(move || {
            start.wait();
            let mut last: HashMap<String, u64> = HashMap::new();
            let (mut kinds, mut laps, mut chained) = (Kinds::default(), 0u64, true);
            for item in &mut w {
                match item {
                    Ok(Event::Change(c)) => {
                        assert!(c.key.starts_with("user/"));
                        if let Some(prev) = last.get(&c.key) {
                            chained &= c.old.as_ref() == Some(prev);
                            chained &= c.kind != Kind::Create;
                        }
                        match c.kind {
                            Kind::Delete => last.remove(&c.key),
                            _ => last.insert(c.key.clone(), c.value.unwrap()),
                        };
                        kinds.add(c.kind);
                    }
                    Ok(Event::SnapshotDone { .. }) => {}
                    Err(_lagged) => {
                        // A gap: the chain can only be checked again from here.
                        laps += 1;
                        last.clear();
                    }
                }
            }
            (kinds, laps, chained)
        })
    };

    // Watcher 3: slow. It is lapped, told how much it missed, and recovers
    // from a snapshot without being dropped, keeping a view of the store.
    let slow = {
        let mut w = feed.watch(WatchOptions::all());
        let start = start.clone();
        let writers_done = writers_done.clone();
        thread::spawn(move || {
            start.wait();
            let mut view: HashMap<String, u64> = HashMap::new();
            let (mut got, mut laps, mut missed) = (0u64, 0u64, 0u64);
            let mut first_lap = None;
            let mut snapshot_keys = Vec::new();
            loop {
                // A borrowed event holds a reclamation guard until it is
                // dropped, so act on a lap after the match, not inside it.
                let lapped = match w.next_timeout(Duration::from_millis(10)) {
                    Ok(Some(EventRef::Change(c))) => {
                        match c.value() {
                            Some(v) => view.insert(c.key().clone(), *v),
                            None => view.remove(c.key()),
                        };
                        got += 1;
                        None
                    }
                    Ok(Some(EventRef::SnapshotDone { .. })) | Ok(None) => None,
                    Err(RecvError::Lagged(l)) => Some(l),
                    Err(RecvError::Closed) => break,
                };
                let Some(l) = lapped else {
                    // Slow while the writers run (the event is released
                    // first); once they stop, it catches up at full speed.
                    if !writers_done.load(Ordering::Acquire) {
                        thread::sleep(Duration::from_micros(200));
                    }
                    continue;
                };
                laps += 1;
                missed += l.missed;
                first_lap.get_or_insert(l);
                // Recover in place: the snapshot replaces the view.
                view.clear();
                w.resnapshot();
                let mut buf = Vec::new();
                // Read the snapshot in owned batches. A batch may run past the
                // marker into live events: apply those too, in order.
                let mut snapshot_done = false;
                while !snapshot_done {
                    match w.next_batch(&mut buf, 4096) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    for ev in buf.drain(..) {
                        match ev {
                            Event::Change(c) => {
                                got += u64::from(snapshot_done);
                                match c.value {
                                    Some(v) => view.insert(c.key, v),
                                    None => view.remove(&c.key),
                                };
                            }
                            Event::SnapshotDone { .. } => {
                                snapshot_keys.push(view.len());
                                snapshot_done = true;
                            }
                        }
                    }
                }
            }
            (got, laps, missed, first_lap, snapshot_keys, view)
        })
    };

    // Watcher 4: a consumer that checkpoints. Every CHECKPOINT_EVERY events
    // it saves its cursor and drops its watcher; a new watcher resumes from
    // the saved seq, and its first read must be exactly that seq (or, if the
    // ring moved past it meanwhile, a lap counted from exactly that seq).
    let resume = {
        let start = start.clone();
        let feed = feed.clone();
        let mut w: Watcher<String, u64> = feed.watch(WatchOptions::all());
        thread::spawn(move || {
            start.wait();
            let t = Instant::now();
            let (mut got, mut missed, mut since_checkpoint) = (0u64, 0u64, 0u64);
            let (mut restarts, mut exact, mut lapped_at_restart) = (0u64, 0u64, 0u64);
            let mut must_start_at: Option<u64> = None;
            loop {
                let mut on_event = |ev: EventRef<'_, String, u64>| {
                    let seq = ev.as_change().expect("no snapshot here").seq();
                    if let Some(saved) = must_start_at.take() {
                        assert_eq!(seq, saved, "a resumed watcher continues at the saved seq");
                        exact += 1;
                    }
                    got += 1;
                    since_checkpoint += 1;
                };
                let read = match w.drain_with(4096, &mut on_event) {
                    Ok(0) => match w.next_timeout(Duration::from_millis(50)) {
                        Ok(Some(ev)) => {
                            on_event(ev);
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    },
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                match read {
                    Ok(()) => {}
                    Err(RecvError::Lagged(l)) => {
                        if let Some(saved) = must_start_at.take() {
                            assert_eq!(l.missed, l.resume_at - saved, "counted from the saved seq");
                            lapped_at_restart += 1;
                        }
                        missed += l.missed;
                    }
                    Err(RecvError::Closed) => break,
                }
                if since_checkpoint >= CHECKPOINT_EVERY {
                    let saved = w.cursor(); // what a service would persist
                    drop(w);
                    w = feed.watch(WatchOptions::all().from(saved));
                    must_start_at = Some(saved);
                    restarts += 1;
                    since_checkpoint = 0;
                }
            }
            let exact_or_told = exact + lapped_at_restart + u64::from(must_start_at.is_some());
            assert_eq!(exact_or_told, restarts, "every restart was checked");
            (got, missed, restarts, exact, lapped_at_restart, t.elapsed())
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
                let key_of = |i: u64| &keys[(i.wrapping_mul(0x9E37_79B9) % KEYS) as usize];
                let (mut events, mut deletes) = (0u64, 0u64);
                for i in 0..WRITES_PER_WRITER {
                    if i % 10 == 9 {
                        // Delete the key written three writes ago: it is present
                        // (a writer's key sequence repeats only every KEYS writes).
                        if feed.delete(key_of(i - 3).as_str()).unwrap().is_some() {
                            deletes += 1;
                            events += 1;
                        }
                    } else {
                        feed.put(key_of(i).clone(), i).unwrap();
                        events += 1;
                    }
                }
                (events, deletes)
            })
        })
        .collect();
    let (mut events, mut deletes) = (0u64, 0u64);
    for w in writers {
        let (e, d) = w.join().unwrap();
        events += e;
        deletes += d;
    }
    let write_time = t.elapsed();
    writers_done.store(true, Ordering::Release);
    let head = feed.head();
    feed.close();

    let (all, all_missed, all_time) = all.join().unwrap();
    let (users, user_laps, chained) = users.join().unwrap();
    let (slow_got, slow_laps, slow_missed, first_lap, snapshot_keys, slow_view) =
        slow.join().unwrap();
    let (res_got, res_missed, restarts, exact, lapped_at_restart, res_time) =
        resume.join().unwrap();

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64() / 1e6;
    println!(
        "writers:  {events} events ({deletes} of them deletes) in {write_time:.2?} = {:.2} M events/s",
        rate(events, write_time)
    );
    println!(
        "'all':    received {} ({} creates, {} updates, {} deletes), told of {all_missed} missed; {:.2} M events/s",
        all.total(),
        all.create,
        all.update,
        all.delete,
        rate(all.total(), all_time)
    );
    // Every seq up to the head was received or reported missed. (Until
    // seqs are dense, a writer that lost a race may give up a seq: the head
    // then counts `head - events` seqs that carry no event.)
    let given_up = head - events;
    let accounted = |got: u64, missed: u64| events <= got + missed && got + missed <= head;
    println!(
        "          received + missed = {} of {head} seqs{}: nothing lost silently: {}",
        all.total() + all_missed,
        if given_up > 0 {
            format!(" ({given_up} given up by racing writers)")
        } else {
            String::new()
        },
        accounted(all.total(), all_missed)
    );
    println!(
        "'user/':  received {} ({} deletes), lapped {}; per-key old == previous value: {chained}",
        users.total(),
        users.delete,
        times(user_laps),
    );
    let first = first_lap.map_or(String::new(), |l| {
        format!(
            " (first: missed {} events, resumed at seq {})",
            l.missed, l.resume_at
        )
    });
    println!(
        "'slow':   received {slow_got}; lapped {}, missed {slow_missed} events in total{first}, recovered by resnapshot every time",
        times(slow_laps)
    );
    if let (Some(min), Some(max)) = (snapshot_keys.iter().min(), snapshot_keys.iter().max()) {
        println!(
            "          each snapshot held {min} to {max} live keys, then live events followed"
        );
    }
    let store: HashMap<String, u64> = ["user", "order"]
        .iter()
        .flat_map(|k| (0..KEYS).map(move |i| format!("{k}/{i}")))
        .filter_map(|k| feed.get(k.as_str()).map(|(v, _)| (k, v)))
        .collect();
    let view_ok = slow_view == store;
    println!(
        "          after catching up, its view ({} keys) equals the store: {view_ok}",
        slow_view.len()
    );
    println!(
        "'resume': restarted {} from a saved cursor: {exact} continued at exactly the saved seq, {lapped_at_restart} were told Lagged counted from it; received {res_got}, told of {res_missed} missed; {:.2} M events/s",
        times(restarts),
        rate(res_got, res_time)
    );

    // Replay: a new watcher reads the whole ring in place, from the oldest
    // seq it still holds (the feed is closed: it ends with `Closed`).
    let oldest = (head + 1).saturating_sub(feed.capacity() as u64).max(1);
    let mut replay = feed.watch(WatchOptions::all().from(oldest));
    let (mut replayed, mut deleted, t) = (0u64, 0u64, Instant::now());
    while let Ok(n) = replay.drain_with(usize::MAX, |ev| {
        deleted += u64::from(ev.as_change().is_some_and(|c| c.kind() == Kind::Delete));
    }) {
        if n == 0 {
            break;
        }
        replayed += n as u64;
    }
    let replay_time = t.elapsed();
    println!(
        "replay:   a new watcher .from({oldest}) read the ring's last {replayed} events ({deleted} deletes) in place in {replay_time:.2?} = {:.1} M events/s",
        rate(replayed, replay_time)
    );

    assert!(accounted(all.total(), all_missed), "no silent loss ('all')");
    assert!(accounted(res_got, res_missed), "no silent loss ('resume')");
    assert!(
        deletes > 0 && all.delete > 0,
        "deletes produce Delete events"
    );
    assert!(chained, "per-key chain");
    assert!(replayed <= head + 1 - oldest && replayed + given_up >= head + 1 - oldest);
    assert!(
        view_ok,
        "the slow watcher's recovered view equals the store"
    );
}
