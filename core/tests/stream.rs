//! `WatchStream` (feature `async`): owned events in order on a
//! multi-threaded tokio runtime, laps with the exact count, wake-ups on
//! write and on close. Synchronisation is only the feed itself, channels and
//! joins; no sleeps.
#![cfg(feature = "async")]

use std::sync::mpsc;

use futures_util::StreamExt;
use kvfeed::{Config, Event, Feed, Kind, Kinds, WatchOptions, WatchStream};

type Log = Vec<(u64, Kind, String)>;

async fn collect(mut stream: WatchStream<String, u64>) -> Log {
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        match item.expect("the ring is large enough: no lap") {
            Event::Change(c) => got.push((c.seq, c.kind, c.key)),
            Event::SnapshotDone { .. } => unreachable!("no snapshot was asked for"),
        }
    }
    got
}

#[test]
fn streams_spawned_on_a_multi_thread_runtime_receive_their_events_in_order() {
    const OPS: u64 = 20_000;
    let feed: Feed<String, u64> = Feed::with_config(Config::new().capacity(1 << 16)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    // Spawned tasks must be `Send`: this compiles only because the stream is.
    let all = rt.spawn(collect(feed.watch(WatchOptions::all()).into_stream()));
    let prefix = rt.spawn(collect(
        feed.watch(WatchOptions::all().prefix("a/")).into_stream(),
    ));
    let deletes = rt.spawn(collect(
        feed.watch(WatchOptions::all().kinds(Kinds::DELETE))
            .into_stream(),
    ));

    // The writer runs on a plain thread while the tasks are parked or reading.
    let writer = {
        let feed = feed.clone();
        std::thread::spawn(move || {
            let mut log = Log::new();
            for i in 0..OPS {
                let key = format!("{}/{}", if i % 3 == 0 { "a" } else { "b" }, i % 50);
                if i % 7 == 6 {
                    if let Some((seq, _)) = feed.delete_seq(key.as_str()).unwrap() {
                        log.push((seq, Kind::Delete, key));
                    }
                } else {
                    let existed = feed.get(key.as_str()).is_some();
                    let seq = feed.put(key.clone(), i).unwrap();
                    log.push((seq, if existed { Kind::Update } else { Kind::Create }, key));
                }
            }
            feed.close();
            log
        })
    };
    let log = writer.join().unwrap();
    assert!(log.iter().any(|e| e.1 == Kind::Delete));

    let all = rt.block_on(all).unwrap();
    let prefix = rt.block_on(prefix).unwrap();
    let deletes = rt.block_on(deletes).unwrap();
    assert_eq!(all, log);
    let want: Log = log
        .iter()
        .filter(|e| e.2.starts_with("a/"))
        .cloned()
        .collect();
    assert_eq!(prefix, want);
    let want: Log = log
        .iter()
        .filter(|e| e.1 == Kind::Delete)
        .cloned()
        .collect();
    assert_eq!(deletes, want);
}

#[test]
fn a_lap_reaches_the_stream_with_the_exact_count_and_the_stream_continues() {
    let feed: Feed<u32, u32> = Feed::with_config(Config::new().capacity(8)).unwrap();
    let mut s = feed.watch(WatchOptions::all()).into_stream();
    let seqs: Vec<u64> = (0..20).map(|i| feed.put(i % 4, i).unwrap()).collect();
    feed.close();
    futures_executor::block_on(async {
        let lagged = s.recv().await.unwrap().unwrap_err();
        assert_eq!(lagged.missed, lagged.resume_at - seqs[0]);
        assert_eq!(s.get_ref().cursor(), lagged.resume_at);
        let rest: Vec<u64> = s
            .map(|item| item.unwrap().as_change().unwrap().seq)
            .collect()
            .await;
        let want: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|&q| q >= lagged.resume_at)
            .collect();
        assert_eq!(rest, want);
        assert_eq!(*want.last().unwrap(), *seqs.last().unwrap());
    });
}

#[test]
fn closing_the_watcher_ends_a_pending_stream() {
    let feed: Feed<u32, u32> = Feed::new();
    let mut s = feed.watch(WatchOptions::all()).into_stream();
    let closer = s.get_ref().closer();
    let (tx, rx) = mpsc::channel();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let task = rt.spawn(async move {
        let first = s.recv().await.unwrap().unwrap();
        tx.send(first.as_change().unwrap().seq).unwrap();
        s.recv().await // nothing more is written: pending until closed
    });
    let seq = feed.put(1, 1).unwrap();
    assert_eq!(rx.recv().unwrap(), seq);
    closer.close();
    assert!(rt.block_on(task).unwrap().is_none());
    assert!(!feed.is_closed(), "only the watcher was closed");
}

#[test]
fn one_write_wakes_every_pending_stream() {
    const TASKS: usize = 16;
    let feed: Feed<u32, u32> = Feed::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut s = feed.watch(WatchOptions::all()).into_stream();
            let ready_tx = ready_tx.clone();
            rt.spawn(async move {
                ready_tx.send(()).unwrap();
                s.recv().await.unwrap().unwrap()
            })
        })
        .collect();
    for _ in 0..TASKS {
        ready_rx.recv().unwrap();
    }
    let seq = feed.put(9, 9).unwrap();
    for t in tasks {
        let ev = rt.block_on(t).unwrap();
        assert_eq!(ev.as_change().unwrap().seq, seq);
    }
}

#[test]
fn the_stream_and_its_recv_future_are_send() {
    fn send<T: Send>(_: &T) {}
    let feed: Feed<String, Vec<u8>> = Feed::new();
    let mut s = feed.watch(WatchOptions::all()).into_stream();
    send(&s.recv());
    send(&s);
}
