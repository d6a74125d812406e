//! Remote watchers: read a bridged stream with the local watcher's contract.
//!
//! ## Positions and cursors
//!
//! Every message has a position in kvfeed seq units (`Kvfeed-Seq`), never
//! decreasing along the stream. The watcher's cursor is the next seq it will
//! read, as for a local watcher. It also tracks the next *stream* sequence it
//! expects: messages arrive through an ephemeral pull consumer that it
//! recreates at that sequence after any error (a server lost, a leader
//! change), dropping what it already had.
//!
//! ## Lagging
//!
//! - A `lagged` marker at `at` (the publisher was lapped): `Lagged { missed:
//!   at + 1 - cursor, resume_at: at + 1 }`, then the recovery snapshot (one
//!   `Create` per live matching key, seq = its version), `SnapshotDone`, and
//!   live events from `at + 1`.
//! - The stream's limits removed messages it had not read (JetStream then
//!   starts later without a word): the watcher sees the stream sequence jump
//!   and reports `Lagged { missed: p - cursor, resume_at: p }`, where `p` is
//!   the position of the first message still there.
//! - A seq jump between two consecutive stream messages is no loss: those
//!   numbers carried no event (skipped seqs, or events a recovery snapshot
//!   already reflected), exactly as a local watcher passes over them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::Context;
use futures_util::{FutureExt, StreamExt};
use kvfeed::{Change, Kind, Kinds, Lagged};
use tokio::task::JoinHandle;

use crate::format::{self, Record};
use crate::{Bridge, Error, Event};

/// Why a remote read returned no event.
#[derive(Debug)]
pub enum RecvError {
    /// Events were lost before this watcher read them; see [`Lagged`].
    Lagged(Lagged),
    /// The watcher was closed.
    Closed,
    /// NATS kept failing (after retries), or a message in the stream is not
    /// in the kvfeed format (it is passed over; the next read continues).
    Nats(Error),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Lagged(l) => l.fmt(f),
            RecvError::Closed => f.write_str("closed"),
            RecvError::Nats(e) => write!(f, "nats: {e}"),
        }
    }
}

impl std::error::Error for RecvError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Now,
    From(u64),
    Snapshot,
}

/// What a remote watcher sees and where it starts; the same rules as
/// [`kvfeed::WatchOptions`]: an event matches when its key is one of the
/// keys **or** starts with one of the prefixes (none given: every key),
/// **and** its kind is in the mask. Filtering happens in the watcher (the
/// stream carries every event).
#[derive(Clone, Debug)]
pub struct RemoteWatchOptions {
    keys: HashSet<Vec<u8>>,
    prefixes: Vec<Vec<u8>>,
    kinds: Kinds,
    start: Start,
    batch: usize,
}

impl Default for RemoteWatchOptions {
    fn default() -> Self {
        Self::all()
    }
}

impl RemoteWatchOptions {
    /// Every key, every kind, starting after the stream's last message.
    pub fn all() -> Self {
        RemoteWatchOptions {
            keys: HashSet::new(),
            prefixes: Vec::new(),
            kinds: Kinds::ALL,
            start: Start::Now,
            batch: 256,
        }
    }
    /// Also match this key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.keys.insert(key.into());
        self
    }
    /// Also match these keys.
    pub fn keys<K: Into<Vec<u8>>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.keys.extend(keys.into_iter().map(Into::into));
        self
    }
    /// Also match keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.prefixes.push(prefix.as_ref().to_vec());
        self
    }
    /// Only these kinds (default: all).
    pub fn kinds(mut self, kinds: Kinds) -> Self {
        self.kinds = kinds;
        self
    }
    /// Start at `seq` (0 is taken as 1). A seq the stream no longer holds is
    /// reported as `Lagged` by the first read; a seq not written yet is waited for.
    pub fn from(mut self, seq: u64) -> Self {
        self.start = Start::From(seq.max(1));
        self
    }
    /// Start with a snapshot (one `Create` per live matching key, seq = its
    /// version, then `SnapshotDone`, then live events), built by folding the
    /// stream from its latest recovery snapshot, or from its first message
    /// when it still holds seq 1. With neither, the first read reports
    /// `Lagged` from seq 1 and live events follow.
    pub fn snapshot(mut self) -> Self {
        self.start = Start::Snapshot;
        self
    }
    /// How many messages one pull request asks for (default 256): the most
    /// the watcher buffers.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    fn matches_key(&self, key: &[u8]) -> bool {
        (self.keys.is_empty() && self.prefixes.is_empty())
            || self.keys.contains(key)
            || self.prefixes.iter().any(|p| key.starts_with(p))
    }

    fn matches(&self, key: &[u8], kind: Kind) -> bool {
        self.kinds.contains(kind.mask()) && self.matches_key(key)
    }
}

type Messages = pull::Stream;

/// A reader of a bridged stream with the local [`kvfeed::Watcher`]'s
/// contract (see the module doc). Async (tokio): [`next`](Self::next),
/// [`next_timeout`](Self::next_timeout), [`try_next`](Self::try_next),
/// [`into_stream`](Self::into_stream).
pub struct RemoteWatcher {
    js: Context,
    bridge: Bridge,
    opts: RemoteWatchOptions,
    /// The next kvfeed seq this watcher reads.
    cursor: u64,
    /// The next stream sequence expected; a message above it means the
    /// stream's limits removed what lay between.
    next_sseq: u64,
    /// The first message read decides whether anything was lost before it
    /// (a start at a trimmed position).
    check_first: bool,
    /// Start `Now` on a stream whose last position is unknown: the first
    /// message sets the cursor.
    adopt_first: bool,
    msgs: Option<Messages>,
    opening: Option<JoinHandle<Result<Messages, Error>>>,
    failures: u32,
    /// Results decided, not yet returned, each with the cursor after it.
    out: VecDeque<(Result<Event, RecvError>, u64)>,
    /// The cursor after the last result returned (what `cursor()` shows
    /// while results are queued).
    shown: u64,
    /// A recovery snapshot being collected (after its lag marker).
    group: Option<Vec<Change<Vec<u8>, Vec<u8>>>>,
    closed: bool,
}

impl fmt::Debug for RemoteWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWatcher")
            .field("stream", &self.bridge.stream)
            .field("cursor", &self.cursor)
            .field("next_sseq", &self.next_sseq)
            .finish()
    }
}

/// How many NATS failures in a row a read absorbs (retrying, with backoff
/// up to 1 s) before it returns `RecvError::Nats`.
const MAX_FAILURES: u32 = 20;

async fn position(stream: &Stream, sseq: u64) -> Result<u64, Error> {
    let m = stream.get_raw_message(sseq).await?;
    Ok(format::decode(Some(&m.headers), &m.payload)?.position())
}

impl RemoteWatcher {
    /// Opens a watcher on `bridge`'s stream. A snapshot start reads the
    /// stream up to its current end before returning (and waits for a
    /// recovery snapshot in progress to be complete).
    pub async fn new(
        js: Context,
        bridge: &Bridge,
        opts: RemoteWatchOptions,
    ) -> Result<Self, Error> {
        let mut w = RemoteWatcher {
            js,
            bridge: bridge.clone(),
            cursor: 1,
            next_sseq: 1,
            check_first: false,
            adopt_first: false,
            msgs: None,
            opening: None,
            failures: 0,
            out: VecDeque::new(),
            shown: 1,
            group: None,
            closed: false,
            opts,
        };
        let stream = w.js.get_stream(&w.bridge.stream).await?;
        match w.opts.start {
            Start::Now => w.start_now(&stream).await?,
            Start::From(seq) => w.start_from(&stream, seq).await?,
            Start::Snapshot => w.start_snapshot(&stream).await?,
        }
        Ok(w)
    }

    /// The next seq this watcher will read (after the results it returned).
    pub fn cursor(&self) -> u64 {
        if self.out.is_empty() {
            self.cursor
        } else {
            self.shown
        }
    }

    fn emit(&mut self, r: Result<Event, RecvError>) {
        self.out.push_back((r, self.cursor));
    }

    /// Makes every later read return `Closed`.
    pub fn close(&mut self) {
        self.closed = true;
        self.msgs = None;
    }

    async fn start_now(&mut self, stream: &Stream) -> Result<(), Error> {
        for _ in 0..5 {
            let info = stream.get_info().await?;
            let last = info.state.last_sequence;
            self.next_sseq = last + 1;
            if last == 0 {
                self.cursor = 1;
                return Ok(());
            }
            if info.state.messages == 0 {
                self.adopt_first = true;
                return Ok(());
            }
            if let Ok(p) = position(stream, last).await {
                self.cursor = p + 1;
                return Ok(());
            }
        }
        Err("the stream kept changing under the start".into())
    }

    async fn start_from(&mut self, stream: &Stream, seq: u64) -> Result<(), Error> {
        self.cursor = seq;
        'attempt: for _ in 0..5 {
            let info = stream.get_info().await?;
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            if info.state.messages == 0 {
                self.next_sseq = last + 1;
                self.check_first = last > 0;
                return Ok(());
            }
            // The first stream sequence whose position is >= seq.
            let (mut lo, mut hi) = (first, last + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match position(stream, mid).await {
                    Ok(p) if p >= seq => hi = mid,
                    Ok(_) => lo = mid + 1,
                    Err(_) => continue 'attempt, // trimmed under us
                }
            }
            self.next_sseq = lo;
            // Starting at the oldest message held: what lay before it may be gone.
            self.check_first = lo == first && first > 1;
            return Ok(());
        }
        Err("the stream kept changing under the start".into())
    }

    async fn start_snapshot(&mut self, stream: &Stream) -> Result<(), Error> {
        for _ in 0..3 {
            let info = stream.get_info().await?;
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            let mut base = None;
            if last == 0 || first == 1 {
                base = Some(1);
            }
            match stream
                .get_last_raw_message_by_subject(&self.bridge.subject(format::DONE))
                .await
            {
                Ok(d) => {
                    if let Record::SnapshotDone { group_start, .. } =
                        format::decode(Some(&d.headers), &d.payload)?
                    {
                        if group_start >= first && info.state.messages > 0 {
                            base = Some(group_start);
                        }
                    }
                }
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(base) = base else { break };
            if self.fold(base, last).await? {
                return Ok(());
            }
        }
        // No base to fold from: report what is gone, then live events.
        self.start_from(stream, 1).await
    }

    /// Folds the stream from stream sequence `base` to at least `target`
    /// into a snapshot; false when the limits removed messages meanwhile.
    async fn fold(&mut self, base: u64, target: u64) -> Result<bool, Error> {
        self.next_sseq = base;
        self.msgs = None;
        self.opening = None;
        let mut map: HashMap<Vec<u8>, (Vec<u8>, u64)> = HashMap::new();
        let (mut in_group, mut position, mut consistent_at) = (false, 0, 0);
        while self.next_sseq <= target || in_group {
            let (sseq, rec) = match self.pull_one().await {
                Ok(m) => m,
                Err(RecvError::Nats(e)) => return Err(e),
                Err(other) => return Err(other.to_string().into()),
            };
            if sseq < self.next_sseq {
                continue;
            }
            if sseq > self.next_sseq {
                return Ok(false);
            }
            self.next_sseq = sseq + 1;
            let Ok(rec) = rec else { continue };
            match rec {
                Record::Event {
                    seq,
                    kind,
                    key,
                    value,
                    ..
                } => {
                    match (kind, value) {
                        (Kind::Delete, _) | (_, None) => map.remove(&key),
                        (_, Some(v)) => map.insert(key, (v, seq)),
                    };
                    position = seq;
                }
                Record::Lagged { at } => {
                    map.clear();
                    in_group = true;
                    position = at;
                }
                Record::SnapshotItem {
                    version,
                    key,
                    value,
                    ..
                } => {
                    if in_group {
                        map.insert(key, (value, version));
                    }
                }
                Record::SnapshotDone {
                    consistent_at: c, ..
                } => {
                    if in_group {
                        in_group = false;
                        consistent_at = c;
                    }
                }
            }
        }
        self.cursor = position + 1;
        self.shown = self.cursor;
        if self.opts.kinds.contains(Kinds::CREATE) {
            for (key, (value, version)) in map {
                if self.opts.matches_key(&key) {
                    self.emit(Ok(Event::Change(Change {
                        seq: version,
                        kind: Kind::Create,
                        key,
                        value: Some(value),
                        old: None,
                    })));
                }
            }
        }
        self.emit(Ok(Event::SnapshotDone {
            at: position,
            consistent_at: consistent_at.max(position),
        }));
        Ok(true)
    }

    /// The next matching event, waiting as long as it takes.
    pub async fn next(&mut self) -> Result<Event, RecvError> {
        loop {
            if let Some((r, cursor)) = self.out.pop_front() {
                self.shown = cursor;
                return r;
            }
            self.shown = self.cursor;
            if self.closed {
                return Err(RecvError::Closed);
            }
            let (sseq, rec) = self.pull_one().await?;
            match rec {
                Ok(rec) => self.handle(sseq, rec),
                Err(e) => {
                    self.next_sseq = self.next_sseq.max(sseq + 1);
                    return Err(RecvError::Nats(e.into()));
                }
            }
        }
    }

    /// The next matching event, waiting up to `timeout`; `Ok(None)` when
    /// the time ran out.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Event>, RecvError> {
        match tokio::time::timeout(timeout, self.next()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The next matching event if one has already arrived; never waits.
    /// Call it inside a tokio runtime.
    pub fn try_next(&mut self) -> Result<Option<Event>, RecvError> {
        self.next().now_or_never().transpose()
    }

    /// This watcher as an async `Stream` (ends when closed).
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<Event, RecvError>> + Send {
        futures_util::stream::unfold(self, |mut w| async move {
            match w.next().await {
                Err(RecvError::Closed) => None,
                r => Some((r, w)),
            }
        })
    }

    /// The next stream message (its sequence and decoding), recreating the
    /// consumer at `next_sseq` after errors.
    async fn pull_one(&mut self) -> Result<(u64, Result<Record, format::FormatError>), RecvError> {
        loop {
            if self.msgs.is_none() {
                let handle = self.opening.get_or_insert_with(|| {
                    tokio::spawn(open(
                        self.js.clone(),
                        self.bridge.stream.clone(),
                        self.next_sseq,
                        self.opts.batch,
                    ))
                });
                let opened = handle.await;
                self.opening = None;
                match opened {
                    Ok(Ok(m)) => self.msgs = Some(m),
                    Ok(Err(e)) => self.fail(e).await?,
                    Err(e) => self.fail(e.into()).await?,
                }
                continue;
            }
            let msgs = self.msgs.as_mut().expect("opened above");
            match msgs.next().await {
                Some(Ok(m)) => {
                    let sseq = match m.info() {
                        Ok(info) => info.stream_sequence,
                        Err(e) => {
                            let e: Error = e.to_string().into();
                            self.msgs = None;
                            self.fail(e).await?;
                            continue;
                        }
                    };
                    self.failures = 0;
                    return Ok((sseq, format::decode(m.headers.as_ref(), &m.payload)));
                }
                Some(Err(e)) => {
                    self.msgs = None;
                    self.fail(e.into()).await?;
                }
                None => self.msgs = None,
            }
        }
    }

    async fn fail(&mut self, e: Error) -> Result<(), RecvError> {
        self.failures += 1;
        if self.failures >= MAX_FAILURES {
            self.failures = 0;
            return Err(RecvError::Nats(e));
        }
        let pause =
            Duration::from_millis(25u64 << self.failures.min(6)).min(Duration::from_secs(1));
        tokio::time::sleep(pause).await;
        Ok(())
    }

    fn lagged(&mut self, resume_at: u64) {
        let missed = resume_at - self.cursor;
        self.cursor = resume_at;
        self.emit(Err(RecvError::Lagged(Lagged { missed, resume_at })));
    }

    /// Applies one stream message to the cursor and the output queue.
    fn handle(&mut self, sseq: u64, rec: Record) {
        if sseq < self.next_sseq {
            return; // read again after a consumer was recreated
        }
        let trimmed = sseq > self.next_sseq || std::mem::take(&mut self.check_first);
        self.next_sseq = sseq + 1;
        if std::mem::take(&mut self.adopt_first) {
            self.cursor = match rec {
                Record::Event { seq, .. } => seq,
                ref other => other.position() + 1,
            };
        }
        if trimmed {
            let had_group = self.group.take().is_some();
            let resume_at = match rec {
                Record::Event { seq, .. } => seq,
                ref other => other.position() + 1,
            };
            if resume_at > self.cursor {
                self.lagged(resume_at);
            } else if had_group {
                // The recovery snapshot being read was itself removed.
                self.lagged(self.cursor);
            }
            if matches!(
                rec,
                Record::SnapshotItem { .. } | Record::SnapshotDone { .. }
            ) {
                return; // the rest of a group whose start is gone
            }
        }
        match rec {
            Record::Event {
                seq,
                kind,
                key,
                value,
                old,
            } => {
                if seq < self.cursor {
                    return;
                }
                self.cursor = seq + 1;
                if self.opts.matches(&key, kind) {
                    self.emit(Ok(Event::Change(Change {
                        seq,
                        kind,
                        key,
                        value,
                        old,
                    })));
                }
            }
            Record::Lagged { at } => {
                if at + 1 > self.cursor {
                    self.lagged(at + 1);
                    self.group = Some(Vec::new());
                } else if self.group.is_some() {
                    // A recovery restarted at the same head: collect it afresh.
                    self.group = Some(Vec::new());
                }
            }
            Record::SnapshotItem {
                version,
                key,
                value,
                ..
            } => {
                if let Some(items) = self.group.as_mut() {
                    if self.opts.kinds.contains(Kinds::CREATE) && self.opts.matches_key(&key) {
                        items.push(Change {
                            seq: version,
                            kind: Kind::Create,
                            key,
                            value: Some(value),
                            old: None,
                        });
                    }
                }
            }
            Record::SnapshotDone {
                at, consistent_at, ..
            } => {
                if let Some(items) = self.group.take() {
                    for c in items {
                        self.emit(Ok(Event::Change(c)));
                    }
                    self.emit(Ok(Event::SnapshotDone { at, consistent_at }));
                }
            }
        }
    }
}

/// Creates an ephemeral pull consumer at `start` and its message stream.
async fn open(js: Context, stream: String, start: u64, batch: usize) -> Result<Messages, Error> {
    let stream = js.get_stream_no_info(&stream).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await?;
    let msgs = consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(1))
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    Ok(msgs)
}
