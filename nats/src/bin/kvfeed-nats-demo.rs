//! The bridge end to end, as separate processes (used by `nats/demo.sh`,
//! the crash test and the benchmark).
//!
//! ```text
//! kvfeed-nats-demo store --url U --stream S --events N [--keys K] [--capacity C] [--pace-us P] [--replicas R]
//! kvfeed-nats-demo watch --url U --stream S --name W --state FILE --events N [--keys K] [--prefix P] [--stop-after M]
//! kvfeed-nats-demo bench --url U [--events N] [--latency-events M]
//! ```
//!
//! `store` writes the scripted history (`testkit::scripted`) into a feed
//! while a publisher ships it, and exits once everything is stored.
//! `watch` resumes from the seq saved in its state file (or 1), applies
//! what it receives to a view, saves its cursor after every event, and at
//! the end (cursor past the store's last seq) checks its view against the
//! scripted history. `--stop-after M` makes it exit after M events (to be
//! restarted). `bench` measures throughput and latency in one process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kvfeed::{Config, Feed, Kind, WatchOptions};
use kvfeed_nats::testkit::{apply_scripted, jetstream};
use kvfeed_nats::{
    Bridge, ByteFeed, Error, Event, Publisher, RecvError, RemoteWatchOptions, RemoteWatcher,
};

struct Args(Vec<String>);

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn str(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }
    fn num(&self, name: &str, default: u64) -> u64 {
        self.get(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("--{name} wants a number"))
        })
    }
    fn urls(&self) -> Vec<String> {
        self.str("url", "nats://127.0.0.1:4222")
            .split(',')
            .map(str::to_string)
            .collect()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("usage: kvfeed-nats-demo store|watch|bench [options] (see the source's doc)");
        std::process::exit(2);
    };
    let args = Args(argv);
    match cmd.as_str() {
        "store" => store(&args).await,
        "watch" => watch(&args).await,
        "bench" => bench(&args).await,
        other => Err(format!("unknown command {other}").into()),
    }
}

async fn store(args: &Args) -> Result<(), Error> {
    let js = jetstream(&args.urls()).await?;
    let bridge = Bridge::new(&args.str("stream", "demo"));
    let mut config = bridge.stream_config();
    config.num_replicas = args.num("replicas", 1) as usize;
    bridge.create_stream(&js, config).await?;
    let (events, keys) = (args.num("events", 10_000), args.num("keys", 100));
    let capacity = args.num("capacity", 1 << 15) as usize;
    let feed: ByteFeed = Feed::with_config(Config::new().capacity(capacity))?;
    let publisher = Publisher::spawn(feed.clone(), js, bridge);
    let pace = Duration::from_micros(args.num("pace-us", 0));
    let writer = {
        let feed = feed.clone();
        std::thread::spawn(move || {
            for i in 0..events {
                apply_scripted(&feed, i, keys);
                if !pace.is_zero() {
                    std::thread::sleep(pace);
                }
            }
        })
    };
    writer.join().map_err(|_| "writer panicked")?;
    let head = feed.head();
    eprintln!("store: wrote {events} operations, head {head}; waiting for the stream");
    if !publisher.wait_acked(head, Duration::from_secs(120)).await {
        return Err(format!("not everything was stored: acked {}", publisher.acked()).into());
    }
    let recoveries = publisher
        .stats()
        .recoveries
        .load(std::sync::atomic::Ordering::Relaxed);
    publisher.stop().await?;
    println!("store: head {head} stored (recovery groups written: {recoveries})");
    Ok(())
}

async fn watch(args: &Args) -> Result<(), Error> {
    let js = jetstream(&args.urls()).await?;
    let bridge = Bridge::new(&args.str("stream", "demo"));
    let name = args.str("name", "w");
    let state = args.str("state", &format!("/tmp/kvfeed-nats-{name}.state"));
    let (events, keys) = (args.num("events", 10_000), args.num("keys", 100));
    let stop_after = args.num("stop-after", u64::MAX);
    // The expected final state: the scripted history on a local feed.
    let expected: ByteFeed = Feed::with_config(Config::new().capacity(1 << 10))?;
    (0..events).for_each(|i| apply_scripted(&expected, i, keys));
    let last = expected.head();
    // The saved state: the cursor, then the view ("key value version" lines).
    let mut view: HashMap<Vec<u8>, (Vec<u8>, u64)> = HashMap::new();
    let mut cursor = 1;
    if let Ok(text) = std::fs::read_to_string(&state) {
        let mut lines = text.lines();
        cursor = lines.next().and_then(|l| l.parse().ok()).unwrap_or(1);
        for l in lines {
            let mut p = l.split(' ');
            if let (Some(k), Some(v), Some(ver)) = (p.next(), p.next(), p.next()) {
                view.insert(k.as_bytes().to_vec(), (v.as_bytes().to_vec(), ver.parse()?));
            }
        }
        println!("{name}: resuming at seq {cursor} with {} keys", view.len());
    }
    let mut opts = RemoteWatchOptions::all().from(cursor);
    if let Some(p) = args.get("prefix") {
        opts = opts.prefix(p);
    }
    let mut w = RemoteWatcher::new(js, &bridge, opts).await?;
    let mut received = 0u64;
    let mut idle = Instant::now();
    while w.cursor() <= last && received < stop_after {
        match w.next_timeout(Duration::from_millis(200)).await? {
            Some(Event::Change(c)) => {
                match c.kind {
                    Kind::Delete => view.remove(&c.key),
                    _ => view.insert(c.key, (c.value.unwrap_or_default(), c.seq)),
                };
                received += 1;
            }
            Some(Event::SnapshotDone { .. }) => {}
            // Filtered-out events move the cursor without a result.
            None if idle.elapsed() < Duration::from_secs(30) => continue,
            None => return Err(format!("{name}: nothing for 30 s at seq {}", w.cursor()).into()),
        }
        idle = Instant::now();
        let mut text = format!("{}\n", w.cursor());
        for (k, (v, ver)) in &view {
            text.push_str(&format!(
                "{} {} {ver}\n",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            ));
        }
        std::fs::write(&state, text)?;
    }
    if received >= stop_after && w.cursor() <= last {
        println!(
            "{name}: stopping after {received} events at seq {} (state saved in {state})",
            w.cursor()
        );
        return Ok(());
    }
    // Compare with the store's final state (filtered by the prefix).
    let prefix = args.str("prefix", "");
    let mut want: HashMap<Vec<u8>, (Vec<u8>, u64)> = HashMap::new();
    let mut snap = expected.watch(WatchOptions::all().snapshot());
    while let Ok(Some(ev)) = snap.try_next() {
        if let Some(c) = ev.as_change() {
            if c.key().starts_with(prefix.as_bytes()) {
                want.insert(
                    c.key().clone(),
                    (c.value().cloned().unwrap_or_default(), c.seq()),
                );
            }
        } else {
            break;
        }
    }
    let ok = want == view;
    println!(
        "{name}: reached seq {last}; {received} events this run; view of {} keys {} the store",
        view.len(),
        if ok { "EQUALS" } else { "DIFFERS FROM" }
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn bench(args: &Args) -> Result<(), Error> {
    let js = jetstream(&args.urls()).await?;
    let events = args.num("events", 200_000);
    let lat_events = args.num("latency-events", 5_000);
    // Throughput: one writer thread puts as fast as it can; the remote
    // watcher (same process) receives everything.
    {
        let bridge = Bridge::new("bench_tp");
        bridge.create_stream(&js, bridge.stream_config()).await?;
        let feed: ByteFeed = Feed::with_config(Config::new().capacity(1 << 20))?;
        let mut w = RemoteWatcher::new(js.clone(), &bridge, RemoteWatchOptions::all()).await?;
        let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
        let start = Instant::now();
        let writer = {
            let feed = feed.clone();
            std::thread::spawn(move || {
                for i in 0..events {
                    feed.put(format!("k{}", i % 1000).into_bytes(), vec![0u8; 32])
                        .expect("put");
                }
            })
        };
        let mut got = 0;
        while got < events {
            match w.next_timeout(Duration::from_secs(30)).await {
                Ok(Some(_)) => got += 1,
                Ok(None) => return Err("bench: stalled".into()),
                Err(RecvError::Lagged(l)) => return Err(format!("bench: lagged {l}").into()),
                Err(e) => return Err(e.into()),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        writer.join().map_err(|_| "writer panicked")?;
        publisher.stop().await?;
        println!(
            "throughput: {events} events (32-byte values, 1000 keys), local put -> remote delivery: {:.0} events/s ({secs:.2} s)",
            events as f64 / secs
        );
    }
    // Latency: paced writes (one every 200 us); each value carries its put
    // time; the remote watcher records delivery - put.
    {
        let bridge = Bridge::new("bench_lat");
        bridge.create_stream(&js, bridge.stream_config()).await?;
        let feed: ByteFeed = Feed::new();
        let mut w = RemoteWatcher::new(js.clone(), &bridge, RemoteWatchOptions::all()).await?;
        let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
        let base = Instant::now();
        let writer = {
            let feed = feed.clone();
            std::thread::spawn(move || {
                for i in 0..lat_events {
                    let t = base.elapsed().as_nanos() as u64;
                    feed.put(
                        format!("k{}", i % 100).into_bytes(),
                        t.to_le_bytes().to_vec(),
                    )
                    .expect("put");
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let mut lat = Vec::with_capacity(lat_events as usize);
        while (lat.len() as u64) < lat_events {
            match w.next_timeout(Duration::from_secs(30)).await {
                Ok(Some(Event::Change(c))) => {
                    let now = base.elapsed().as_nanos() as u64;
                    let v = c.value.unwrap_or_default();
                    let t = u64::from_le_bytes(v[..8].try_into()?);
                    lat.push(now - t);
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err("bench: stalled".into()),
                Err(e) => return Err(e.into()),
            }
        }
        writer.join().map_err(|_| "writer panicked")?;
        publisher.stop().await?;
        lat.sort_unstable();
        let pct =
            |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
        println!(
            "latency: {lat_events} events, one put every 200 us, local put -> remote delivery: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            pct(0.50),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(())
}
