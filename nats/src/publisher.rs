//! The publisher: appends a feed's events to the stream, exactly once, in
//! seq order.
//!
//! ## Protocol
//!
//! A *session* starts by reading the stream's last message (resync) and
//! decides where to continue:
//!
//! - empty stream: at seq 1;
//! - last message a live event at seq `p`: at `p + 1`, unless the latest
//!   recovery group reflected events past `p` (then a new recovery, below);
//! - last message part of a recovery group, or the position is unknown (the
//!   stream's limits emptied it): a new recovery.
//!
//! It then reads the local feed with an ordinary watcher from that seq and
//! publishes each event with `Nats-Msg-Id` = `ev:<seq>` and
//! `Nats-Expected-Last-Sequence` = the stream sequence it expects to follow,
//! pipelined (up to [`WINDOW`] unacknowledged messages). The server refuses a
//! message whose predecessor is not the one expected, and drops a duplicate
//! id, so a retried or crashed-and-restarted publisher can neither duplicate
//! nor skip: any error ends the session and the next one resyncs from what
//! the stream holds.
//!
//! ## Recovery (the publisher was lapped)
//!
//! When its local watcher reports `Lagged` (it was down, or NATS was slower
//! than the writers for a whole ring), the publisher takes a snapshot of the
//! store (a `snapshot` watcher, writers keep running) and writes a recovery
//! group: a `lagged` marker at position `at` (the snapshot's head), one
//! `snapshot` item per live key, and a `snapshot-done` marker carrying
//! `consistent_at`; then live events from `at + 1`, leaving out those the
//! snapshot already reflected, exactly like a local `resnapshot`. Remote
//! watchers turn the marker into `Lagged { missed, resume_at: at + 1 }`
//! counted from their own cursor, then deliver the snapshot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{Publish, PublishAckFuture};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::Context;
use futures_util::StreamExt;
use kvfeed::{EventRef, RecvError as LocalRecvError, WatchOptions, Watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::format::{self, Outgoing, Record};
use crate::{Bridge, ByteFeed, Error};

/// How many published messages may wait for their acknowledgement.
pub const WINDOW: usize = 256;

/// How many local events one read takes at most.
const BATCH: usize = 256;

/// Counters of a running publisher.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Messages stored in the stream by this publisher.
    pub published: AtomicU64,
    /// Recovery groups written (times it was lapped, or restarted without a
    /// known position).
    pub recoveries: AtomicU64,
    /// Sessions ended by an error (each followed by a resync).
    pub resyncs: AtomicU64,
}

/// Appends a [`ByteFeed`]'s events to a JetStream stream (see the module
/// doc for the protocol). Runs as a tokio task until [`stop`](Self::stop),
/// or until the feed is closed and everything is stored.
#[derive(Debug)]
pub struct Publisher {
    stop: watch::Sender<bool>,
    acked: watch::Receiver<u64>,
    stats: Arc<PublisherStats>,
    task: JoinHandle<Result<(), Error>>,
}

impl Publisher {
    /// Starts publishing `feed` into `bridge`'s stream (which must exist).
    /// Must be called inside a tokio runtime.
    pub fn spawn(feed: ByteFeed, js: Context, bridge: Bridge) -> Publisher {
        let (stop, stop_rx) = watch::channel(false);
        let (acked_tx, acked) = watch::channel(0);
        let stats = Arc::new(PublisherStats::default());
        let task = tokio::spawn(run(feed, js, bridge, stop_rx, acked_tx, stats.clone()));
        Publisher {
            stop,
            acked,
            stats,
            task,
        }
    }

    /// Every event up to this seq is stored in the stream (or covered by a
    /// stored recovery snapshot).
    pub fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// Waits until [`acked`](Self::acked) reaches `seq`; false on timeout.
    pub async fn wait_acked(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.acked.clone();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The publisher's counters.
    pub fn stats(&self) -> &PublisherStats {
        &self.stats
    }

    /// Stops after the messages in flight are acknowledged (or failed).
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        self.task.await?
    }

    /// Waits for the task to end by itself (the feed was closed).
    pub async fn join(self) -> Result<(), Error> {
        self.task.await?
    }
}

async fn run(
    feed: ByteFeed,
    js: Context,
    bridge: Bridge,
    mut stop: watch::Receiver<bool>,
    acked: watch::Sender<u64>,
    stats: Arc<PublisherStats>,
) -> Result<(), Error> {
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let mut session = Session {
            feed: &feed,
            js: &js,
            bridge: &bridge,
            acked: &acked,
            stats: &stats,
            last_sseq: 0,
            inflight: VecDeque::new(),
            progressed: false,
        };
        match session.run(&mut stop).await {
            Ok(()) => return Ok(()),
            Err(_) => {
                stats.resyncs.fetch_add(1, Ordering::Relaxed);
                failures = if session.progressed { 1 } else { failures + 1 };
                // Back off (50 ms doubling up to 1 s) unless asked to stop.
                let pause =
                    Duration::from_millis(50u64 << failures.min(5)).min(Duration::from_secs(1));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

struct Session<'a> {
    feed: &'a ByteFeed,
    js: &'a Context,
    bridge: &'a Bridge,
    acked: &'a watch::Sender<u64>,
    stats: &'a PublisherStats,
    /// Stream sequence of the last message sent (acknowledged or not).
    last_sseq: u64,
    /// Sent, not yet acknowledged: the ack, the position, the expected stream seq.
    inflight: VecDeque<(PublishAckFuture, u64, u64)>,
    /// Whether anything was acknowledged in this session.
    progressed: bool,
}

/// Where a session continues.
struct Resume {
    last_sseq: u64,
    /// The next seq to publish, or None: write a recovery group first.
    next: Option<u64>,
}

impl Session<'_> {
    async fn run(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), Error> {
        let stream = self.js.get_stream(&self.bridge.stream).await?;
        let resume = resync(&stream, self.bridge).await?;
        self.last_sseq = resume.last_sseq;
        // A stream, so the idle wait below can `select!` on it; reads go
        // through the watcher inside (`get_mut`) in batches.
        let mut w = match resume.next {
            Some(next) => {
                self.advance(next - 1);
                self.feed.watch(WatchOptions::all().from(next))
            }
            None => self.recover().await?,
        }
        .into_stream();
        loop {
            if *stop.borrow() {
                return self.flush().await;
            }
            let mut batch: Vec<Outgoing> = Vec::new();
            let read = w.get_mut().drain_with(BATCH, |ev| {
                if let EventRef::Change(c) = ev {
                    batch.push(format::event(
                        c.seq(),
                        c.kind(),
                        c.key(),
                        c.value().map(Vec::as_slice),
                        c.old().map(Vec::as_slice),
                    ));
                }
            });
            for out in batch {
                self.send(out).await?;
            }
            match read {
                Ok(0) => {}
                Ok(_) => continue,
                Err(LocalRecvError::Lagged(_)) => {
                    self.flush().await?;
                    w = self.recover().await?.into_stream();
                    continue;
                }
                Err(LocalRecvError::Closed) => return self.flush().await,
            }
            // Nothing to read: settle what is in flight, then wait.
            if !self.inflight.is_empty() {
                self.flush().await?;
                continue;
            }
            self.advance(w.get_ref().cursor() - 1);
            tokio::select! {
                ev = StreamExt::next(&mut w) => match ev {
                    Some(Ok(kvfeed::Event::Change(c))) => {
                        let out = format::event(c.seq, c.kind, &c.key, c.value.as_deref(), c.old.as_deref());
                        self.send(out).await?;
                    }
                    Some(Ok(kvfeed::Event::SnapshotDone { .. })) => {}
                    Some(Err(_lagged)) => w = self.recover().await?.into_stream(),
                    None => return self.flush().await,
                },
                _ = stop.changed() => {}
            }
        }
    }

    /// Everything up to `position` is stored or covered.
    fn advance(&self, position: u64) {
        self.acked.send_if_modified(|a| {
            let moved = position > *a;
            *a = (*a).max(position);
            moved
        });
    }

    async fn send(&mut self, out: Outgoing) -> Result<(), Error> {
        if self.inflight.len() >= WINDOW {
            self.ack_one().await?;
        }
        let publish = Publish::build()
            .headers(out.headers)
            .payload(out.payload)
            .message_id(out.msg_id)
            .expected_last_sequence(self.last_sseq);
        let ack = self
            .js
            .send_publish(self.bridge.subject(out.suffix), publish)
            .await?;
        self.last_sseq += 1;
        self.inflight.push_back((ack, out.position, self.last_sseq));
        Ok(())
    }

    async fn ack_one(&mut self) -> Result<(), Error> {
        let Some((ack, position, sseq)) = self.inflight.pop_front() else {
            return Ok(());
        };
        let ack = ack.await?;
        if ack.sequence != sseq || ack.duplicate {
            return Err(format!(
                "message expected at stream sequence {sseq} was stored at {} (duplicate: {})",
                ack.sequence, ack.duplicate
            )
            .into());
        }
        self.progressed = true;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        self.advance(position);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        while !self.inflight.is_empty() {
            self.ack_one().await?;
        }
        Ok(())
    }

    /// Writes a recovery group; returns the watcher that continues live
    /// after it (it leaves out what the snapshot reflected).
    async fn recover(&mut self) -> Result<Watcher<Vec<u8>, Vec<u8>>, Error> {
        let mut w = self.feed.watch(WatchOptions::all().snapshot());
        let mut items = Vec::new();
        let (at, consistent_at) = loop {
            match w.try_next() {
                Ok(Some(EventRef::Change(c))) => {
                    let value = c.value().cloned().unwrap_or_default();
                    items.push((c.seq(), c.key().clone(), value));
                }
                Ok(Some(EventRef::SnapshotDone { at, consistent_at })) => {
                    break (at, consistent_at)
                }
                Ok(None) | Err(_) => {
                    return Err("the local snapshot ended without its marker".into())
                }
            }
        };
        let group = self.last_sseq + 1;
        self.send(format::lagged(at, group)).await?;
        for (version, key, value) in items {
            self.send(format::snapshot_item(at, group, version, &key, &value))
                .await?;
        }
        self.send(format::snapshot_done(at, consistent_at, group))
            .await?;
        self.flush().await?;
        self.stats.recoveries.fetch_add(1, Ordering::Relaxed);
        Ok(w)
    }
}

/// Reads the stream's last message and decides where to continue.
async fn resync(stream: &Stream, bridge: &Bridge) -> Result<Resume, Error> {
    let info = stream.get_info().await?;
    let last_sseq = info.state.last_sequence;
    if last_sseq == 0 {
        return Ok(Resume {
            last_sseq,
            next: Some(1),
        });
    }
    if info.state.messages == 0 {
        // The limits removed everything: the position is unknown.
        return Ok(Resume {
            last_sseq,
            next: None,
        });
    }
    let msg = stream.get_raw_message(last_sseq).await?;
    let next = match format::decode(Some(&msg.headers), &msg.payload)? {
        Record::Event { seq, .. } => {
            match stream
                .get_last_raw_message_by_subject(&bridge.subject(format::DONE))
                .await
            {
                Ok(d) => match format::decode(Some(&d.headers), &d.payload)? {
                    Record::SnapshotDone { consistent_at, .. } if consistent_at > seq => None,
                    _ => Some(seq + 1),
                },
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Some(seq + 1),
                Err(e) => return Err(e.into()),
            }
        }
        Record::SnapshotDone {
            at, consistent_at, ..
        } if consistent_at == at => Some(at + 1),
        _ => None,
    };
    Ok(Resume { last_sseq, next })
}
