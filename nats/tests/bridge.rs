//! The bridge against real `nats-server` processes on loopback. Each test
//! checks what remote watchers actually received: total order, per-key
//! old/value chaining, and delivered + missed = seqs passed.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream::Stream};
use kvfeed::{Change, Config, Feed, Kind, Kinds, Lagged, WatchOptions};
use kvfeed_nats::testkit::{apply_scripted, jetstream, NatsServer};
use kvfeed_nats::{
    Bridge, ByteFeed, Event, Publisher, RecvError, RemoteWatchOptions, RemoteWatcher,
};

type C = Change<Vec<u8>, Vec<u8>>;

/// What a remote watcher received, in order.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Change(C),
    Done { at: u64, consistent_at: u64 },
    Lagged(Lagged),
}

/// Reads until the watcher's cursor passes `head` (60 s at most).
async fn read_to(w: &mut RemoteWatcher, head: u64) -> Vec<Got> {
    read_to_with(w, head, false).await
}

/// `read_to`; with `recovery`, a Lagged is followed by a snapshot, read to
/// its end.
async fn read_to_with(w: &mut RemoteWatcher, head: u64, recovery: bool) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    let mut in_snapshot = false;
    while w.cursor() <= head || in_snapshot {
        assert!(
            Instant::now() < deadline,
            "stuck at seq {} of {head}; got {} items",
            w.cursor(),
            got.len()
        );
        match w.next_timeout(Duration::from_millis(250)).await {
            Ok(Some(Event::Change(c))) => got.push(Got::Change(c)),
            Ok(Some(Event::SnapshotDone { at, consistent_at })) => {
                in_snapshot = false;
                got.push(Got::Done { at, consistent_at })
            }
            Ok(None) => {}
            Err(RecvError::Lagged(l)) => {
                // A recovery snapshot follows a lag of the publisher.
                in_snapshot = recovery;
                got.push(Got::Lagged(l))
            }
            Err(e) => panic!("remote read failed: {e}"),
        }
    }
    got
}

/// Every event a local unfiltered watcher from seq 1 sees (the ring must
/// still hold them all).
fn local_events(feed: &ByteFeed, opts: WatchOptions<Vec<u8>>) -> Vec<C> {
    let mut w = feed.watch(opts);
    let mut out = Vec::new();
    loop {
        match w.try_next() {
            Ok(Some(ev)) => out.push(ev.to_owned().as_change().expect("no snapshot").clone()),
            Ok(None) => return out,
            Err(e) => panic!("local watcher: {e}"),
        }
    }
}

/// Checks the contract on a received sequence: live events in strictly
/// increasing seq, each `old` equal to the previous `value` of its key
/// (known once the view is synced: from the start, or from a SnapshotDone
/// after a lag), and cursor accounting: the first live seq, the lags and the
/// events line up with `seqs`, the seqs that carried an event. Returns the
/// materialized view.
fn check(got: &[Got], start: u64, seqs: &[u64]) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut view: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut cursor = start;
    let mut synced = true;
    let mut in_snapshot = false;
    let mut delivered = 0u64;
    let mut missed = 0u64;
    let mut lag_events = 0u64;
    let mut skipped_by_snapshot = 0u64;
    let mut snapshot_range: Option<(u64, u64)> = None;
    // After a Lagged: a recovery snapshot may follow (items carry seqs
    // below the resume point, live events do not).
    let mut after_lag = false;
    for g in got {
        match g {
            Got::Lagged(l) => {
                assert!(!in_snapshot, "Lagged inside a snapshot");
                assert_eq!(
                    l.missed,
                    l.resume_at - cursor,
                    "missed counts seqs from the cursor"
                );
                lag_events += seqs
                    .iter()
                    .filter(|s| (cursor..l.resume_at).contains(s))
                    .count() as u64;
                missed += l.missed;
                cursor = l.resume_at;
                view.clear();
                synced = false;
                after_lag = true;
            }
            Got::Done { at, consistent_at } => {
                assert!(in_snapshot || after_lag, "SnapshotDone outside a snapshot");
                assert_eq!(
                    *at + 1,
                    cursor,
                    "the snapshot covers everything before the resume point"
                );
                in_snapshot = false;
                after_lag = false;
                synced = true;
                snapshot_range = Some((*at, *consistent_at));
            }
            Got::Change(c) if (in_snapshot || after_lag) && c.seq < cursor => {
                in_snapshot = true;
                assert_eq!(c.kind, Kind::Create);
                assert!(
                    view.insert(c.key.clone(), c.value.clone().unwrap())
                        .is_none(),
                    "one item per key"
                );
            }
            Got::Change(c) => {
                assert!(!in_snapshot, "a live event inside a snapshot");
                after_lag = false;
                assert!(
                    c.seq >= cursor,
                    "total order: seq {} below cursor {cursor}",
                    c.seq
                );
                // Seqs between the cursor and this event carried no event
                // (or were reflected by the last snapshot).
                let passed = seqs.iter().filter(|s| (cursor..c.seq).contains(s)).count() as u64;
                if let Some((at, ca)) = snapshot_range {
                    let reflected = seqs
                        .iter()
                        .filter(|s| (cursor..c.seq).contains(s) && **s > at && **s <= ca)
                        .count() as u64;
                    skipped_by_snapshot += reflected;
                    assert_eq!(
                        passed, reflected,
                        "a gap without Lagged before seq {}",
                        c.seq
                    );
                } else {
                    assert_eq!(passed, 0, "a gap without Lagged before seq {}", c.seq);
                }
                if synced {
                    assert_eq!(
                        c.old.as_ref(),
                        view.get(&c.key),
                        "per-key chaining at seq {}",
                        c.seq
                    );
                }
                match c.kind {
                    Kind::Delete => view.remove(&c.key),
                    _ => view.insert(c.key.clone(), c.value.clone().unwrap()),
                };
                cursor = c.seq + 1;
                delivered += 1;
            }
        }
    }
    assert!(
        !in_snapshot,
        "ended inside a snapshot: {:?}",
        got.iter()
            .filter(|g| !matches!(g, Got::Change(_)))
            .collect::<Vec<_>>()
    );
    // delivered + missed = seqs passed (in events: the seqs that carried
    // one; events reflected by a recovery snapshot are neither).
    let passed = seqs.iter().filter(|s| (start..cursor).contains(s)).count() as u64;
    assert_eq!(
        delivered + lag_events + skipped_by_snapshot,
        passed,
        "cursor accounting"
    );
    assert!(
        lag_events <= missed,
        "Lagged counted fewer seqs than events lost"
    );
    view
}

/// The store's current state.
fn store_state(feed: &ByteFeed) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut w = feed.watch(WatchOptions::all().snapshot());
    let mut out = HashMap::new();
    while let Ok(Some(ev)) = w.try_next() {
        match ev.as_change() {
            Some(c) => out.insert(c.key().clone(), c.value().unwrap().clone()),
            None => break,
        };
    }
    out
}

async fn setup(
    server: &NatsServer,
    name: &str,
    edit: impl FnOnce(&mut jetstream::stream::Config),
) -> (jetstream::Context, Bridge, Stream) {
    let js = jetstream(&[server.url()]).await.expect("jetstream");
    let bridge = Bridge::new(name);
    let mut config = bridge.stream_config();
    edit(&mut config);
    let stream = bridge.create_stream(&js, config).await.expect("stream");
    (js, bridge, stream)
}

fn changes(got: &[Got]) -> Vec<C> {
    got.iter()
        .filter_map(|g| match g {
            Got::Change(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn seqs_of(events: &[C]) -> Vec<u64> {
    events.iter().map(|c| c.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sees_what_local_sees_1e5_events_4_writers() {
    let server = NatsServer::start();
    let (js, bridge, _) = setup(&server, "equal", |_| {}).await;
    let feed: ByteFeed = Feed::with_config(Config::new().capacity(1 << 17)).unwrap();
    let mut all = RemoteWatcher::new(js.clone(), &bridge, RemoteWatchOptions::all())
        .await
        .unwrap();
    let filtered_opts = || {
        RemoteWatchOptions::all()
            .prefix(b"t0/")
            .key(b"shared/7".to_vec())
            .kinds(Kinds::UPDATE | Kinds::DELETE)
    };
    let mut filtered = RemoteWatcher::new(js.clone(), &bridge, filtered_opts())
        .await
        .unwrap();
    let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let feed = feed.clone();
            std::thread::spawn(move || {
                for i in 0..25_000u64 {
                    // Own keys and keys shared by all writers (same-key races).
                    let key = if i % 4 == 0 {
                        format!("shared/{}", i % 50)
                    } else {
                        format!("t{t}/{}", i % 500)
                    };
                    if i % 7 == 6 {
                        feed.delete(key.as_bytes()).unwrap();
                    } else {
                        feed.put(key.into_bytes(), format!("{t}:{i}").into_bytes())
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    let head = feed.head();
    let local = local_events(&feed, WatchOptions::all().from(1));
    assert!(local.len() > 80_000, "{} events", local.len());
    assert!(
        publisher.wait_acked(head, Duration::from_secs(120)).await,
        "acked {}",
        publisher.acked()
    );
    let got = read_to(&mut all, head).await;
    assert_eq!(changes(&got), local, "remote == local");
    assert!(got.iter().all(|g| matches!(g, Got::Change(_))));
    let view = check(&got, 1, &seqs_of(&local));
    assert_eq!(view, store_state(&feed));
    // The filtered watcher sees what a local watcher with the same filter sees.
    let local_filtered: Vec<C> = local
        .iter()
        .filter(|c| (c.key.starts_with(b"t0/") || c.key == b"shared/7") && c.kind != Kind::Create)
        .cloned()
        .collect();
    let got_filtered = read_to(&mut filtered, head).await;
    assert_eq!(changes(&got_filtered), local_filtered);
    publisher.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_killed_with_sigkill_and_restarted_leaves_no_duplicate_and_no_gap() {
    let server = NatsServer::start();
    let (js, bridge, stream) = setup(&server, "crash", |_| {}).await;
    let (events, keys) = (20_000u64, 300u64);
    let url = server.url();
    let run = move || {
        Command::new(env!("CARGO_BIN_EXE_kvfeed-nats-demo"))
            .args(["store", "--url", &url, "--stream", "crash"])
            .args(["--events", &events.to_string(), "--keys", &keys.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the store process")
    };
    let mut child = run();
    // Kill it once part of the history is in the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let last = stream.get_info().await.unwrap().state.last_sequence;
        if last >= 3_000 {
            break last;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the store process ended before it was killed"
        );
        assert!(
            Instant::now() < deadline,
            "the store process published nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The same history, on a local feed: what the stream must hold.
    let expected: ByteFeed = Feed::with_config(Config::new().capacity(1 << 15)).unwrap();
    (0..events).for_each(|i| apply_scripted(&expected, i, keys));
    let head = expected.head();
    let before = stream.get_info().await.unwrap().state.last_sequence;
    assert!(
        at_kill < head && before < head,
        "killed mid-stream ({before} of {head} stored)"
    );
    let rerun = run.clone();
    let status = tokio::task::spawn_blocking(move || rerun().wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the restarted store process failed");
    let info = stream.get_info().await.unwrap();
    assert_eq!(
        info.state.messages, head,
        "one message per event: no duplicate"
    );
    let local = local_events(&expected, WatchOptions::all().from(1));
    let mut w = RemoteWatcher::new(js, &bridge, RemoteWatchOptions::all().from(1))
        .await
        .unwrap();
    let got = read_to(&mut w, head).await;
    assert_eq!(changes(&got), local, "no duplicate, no gap, same events");
    check(&got, 1, &seqs_of(&local));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limits_removing_unread_messages_give_exact_lagged() {
    let server = NatsServer::start();
    // max_messages: a watcher that read 10 events, then fell 5000 behind.
    let (js, bridge, _) = setup(&server, "trim", |c| c.max_messages = 1_000).await;
    let feed: ByteFeed = Feed::with_config(Config::new().capacity(1 << 14)).unwrap();
    let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
    let mut reader = RemoteWatcher::new(
        js.clone(),
        &bridge,
        RemoteWatchOptions::all().from(1).batch(20),
    )
    .await
    .unwrap();
    (0..12).for_each(|i| apply_scripted(&feed, i, 100)); // 11 events
    let mut first = Vec::new();
    while first.len() < 10 {
        match reader.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Event::Change(c))) => first.push(Got::Change(c)),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    (12..6_000).for_each(|i| apply_scripted(&feed, i, 100));
    let head = feed.head();
    assert!(publisher.wait_acked(head, Duration::from_secs(60)).await);
    let mut late = RemoteWatcher::new(js.clone(), &bridge, RemoteWatchOptions::all().from(1))
        .await
        .unwrap();
    let mut got = first;
    got.extend(read_to(&mut reader, head).await);
    let late_got = read_to(&mut late, head).await;
    let local = local_events(&feed, WatchOptions::all().from(1));
    let seqs = seqs_of(&local);
    for got in [&got, &late_got] {
        let lags: Vec<&Lagged> = got
            .iter()
            .filter_map(|g| {
                if let Got::Lagged(l) = g {
                    Some(l)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(lags.len(), 1, "one Lagged: {lags:?}");
        // The stream holds the last 1000 messages: everything before them is reported.
        assert_eq!(lags[0].resume_at, head - 999);
        // Whatever was delivered before the lag plus the count equals the seqs passed.
        check(got, 1, &seqs);
        let after: Vec<C> = changes(got)
            .into_iter()
            .filter(|c| c.seq >= lags[0].resume_at)
            .collect();
        assert_eq!(after, local[local.len() - 1000..].to_vec());
    }
    assert_eq!(
        late_got.first(),
        Some(&Got::Lagged(Lagged {
            missed: head - 1000,
            resume_at: head - 999
        }))
    );
    publisher.stop().await.unwrap();

    // max_age: everything older than 1 s is removed.
    let (js, bridge, stream) = setup(&server, "aged", |c| c.max_age = Duration::from_secs(1)).await;
    let feed: ByteFeed = Feed::new();
    let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
    (0..100).for_each(|i| apply_scripted(&feed, i, 1_000));
    assert!(
        publisher
            .wait_acked(feed.head(), Duration::from_secs(30))
            .await
    );
    let old_head = feed.head();
    let mut w = RemoteWatcher::new(js.clone(), &bridge, RemoteWatchOptions::all().from(1))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream.get_info().await.unwrap().state.messages > 0 {
        assert!(
            Instant::now() < deadline,
            "max_age never removed the messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (100..150).for_each(|i| apply_scripted(&feed, i, 1_000));
    let head = feed.head();
    assert!(publisher.wait_acked(head, Duration::from_secs(30)).await);
    let got = read_to(&mut w, head).await;
    assert_eq!(
        got[0],
        Got::Lagged(Lagged {
            missed: old_head,
            resume_at: old_head + 1
        })
    );
    assert_eq!(
        changes(&got),
        local_events(&feed, WatchOptions::all().from(old_head + 1))
    );
    check(
        &got,
        1,
        &seqs_of(&local_events(&feed, WatchOptions::all().from(1))),
    );
    publisher.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_lapped_in_the_local_ring_reports_lagged_then_recovers() {
    let server = NatsServer::start();
    let (js, bridge, _) = setup(&server, "lapped", |_| {}).await;
    let feed: ByteFeed = Feed::with_config(Config::new().capacity(64)).unwrap();
    let keys = 40;
    let mut history: Vec<u64> = Vec::new(); // every seq that carried an event
    let mut record = |feed: &ByteFeed, range: std::ops::Range<u64>| {
        for i in range {
            let before = feed.head();
            apply_scripted(feed, i, keys);
            if feed.head() > before {
                history.push(feed.head());
            }
        }
    };
    let mut remote = RemoteWatcher::new(js.clone(), &bridge, RemoteWatchOptions::all().from(1))
        .await
        .unwrap();
    let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
    record(&feed, 0..50);
    let h1 = feed.head();
    assert!(publisher.wait_acked(h1, Duration::from_secs(30)).await);
    let mut got = read_to(&mut remote, feed.head()).await;
    // The publisher goes down; the writers lap the ring many times.
    publisher.stop().await.unwrap();
    record(&feed, 50..1_050);
    let lapped_head = feed.head();
    let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
    assert!(
        publisher
            .wait_acked(lapped_head, Duration::from_secs(30))
            .await
    );
    // Live writes after the recovery, in steps the 64-event ring can hold.
    for step in (1_050..1_200).step_by(20) {
        record(&feed, step..step + 20);
        assert!(
            publisher
                .wait_acked(feed.head(), Duration::from_secs(30))
                .await
        );
    }
    let head = feed.head();
    assert!(publisher.wait_acked(head, Duration::from_secs(30)).await);
    assert_eq!(
        publisher
            .stats()
            .recoveries
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    got.extend(read_to_with(&mut remote, head, true).await);
    let lag = got
        .iter()
        .find_map(|g| {
            if let Got::Lagged(l) = g {
                Some(*l)
            } else {
                None
            }
        })
        .expect("Lagged");
    // Everything after the first part up to the snapshot's head was missed.
    assert_eq!(
        lag,
        Lagged {
            missed: lapped_head - h1,
            resume_at: lapped_head + 1
        }
    );
    let view = check(&got, 1, &history);
    assert_eq!(
        view,
        store_state(&feed),
        "the recovered view equals the store"
    );
    // A snapshot start folds the stream from the recovery snapshot.
    let mut snap = RemoteWatcher::new(js.clone(), &bridge, RemoteWatchOptions::all().snapshot())
        .await
        .unwrap();
    let mut sview = HashMap::new();
    loop {
        match snap
            .next_timeout(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("snapshot")
        {
            Event::Change(c) => assert!(sview.insert(c.key, c.value.unwrap()).is_none()),
            Event::SnapshotDone { at, consistent_at } => {
                assert_eq!((at, consistent_at), (head, head));
                break;
            }
        }
    }
    assert_eq!(sview, store_state(&feed));
    publisher.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_cluster_survives_the_stream_leader_being_killed() {
    let mut servers = NatsServer::cluster(3);
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let js = jetstream(&urls).await.expect("cluster jetstream");
    let bridge = Bridge::new("replicated");
    let mut config = bridge.stream_config();
    config.num_replicas = 3;
    let mut stream = None;
    for _ in 0..40 {
        match bridge.create_stream(&js, config.clone()).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let stream = stream.expect("create the R3 stream");
    let feed: ByteFeed = Feed::with_config(Config::new().capacity(1 << 15)).unwrap();
    let reader_js = jetstream(&urls).await.unwrap();
    let mut remote = RemoteWatcher::new(reader_js, &bridge, RemoteWatchOptions::all().from(1))
        .await
        .unwrap();
    let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
    (0..3_000).for_each(|i| apply_scripted(&feed, i, 200));
    let mid = feed.head();
    assert!(publisher.wait_acked(mid, Duration::from_secs(60)).await);
    let mut got = read_to(&mut remote, mid / 2).await;
    // Kill the stream's leader.
    let leader = stream
        .get_info()
        .await
        .unwrap()
        .cluster
        .and_then(|c| c.leader)
        .expect("a leader");
    let victim = servers
        .iter_mut()
        .find(|s| s.name == leader)
        .expect("leader is one of ours");
    victim.kill();
    // Writes go on at once; the publisher and the reader find the new leader.
    (3_000..6_000).for_each(|i| apply_scripted(&feed, i, 200));
    let head = feed.head();
    assert!(
        publisher.wait_acked(head, Duration::from_secs(90)).await,
        "acked {} of {head}",
        publisher.acked()
    );
    got.extend(read_to(&mut remote, head).await);
    let local = local_events(&feed, WatchOptions::all().from(1));
    assert_eq!(changes(&got), local, "nothing lost, nothing duplicated");
    check(&got, 1, &seqs_of(&local));
    publisher.stop().await.unwrap();
}
