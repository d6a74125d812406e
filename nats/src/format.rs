//! The message format: what the publisher writes and any NATS client can read.
//!
//! Every message carries its meaning in headers and its bytes in the
//! payload; nothing is encoded in a language-specific way (see the crate
//! README for the table). In short:
//!
//! | subject            | `Kvfeed-Kind`   | `Kvfeed-Seq` (position)       | payload               |
//! |--------------------|-----------------|-------------------------------|-----------------------|
//! | `<prefix>.ev`      | `create` `update` `delete` | the event's seq    | key, value, old       |
//! | `<prefix>.lag`     | `lagged`        | `at`: the recovery snapshot's head | empty            |
//! | `<prefix>.snap`    | `snapshot`      | `at`; `Kvfeed-Version`: the key's version | key, value  |
//! | `<prefix>.done`    | `snapshot-done` | `at`; `Kvfeed-Consistent-At`  | empty                 |
//!
//! The payload is the key, then the value (if any), then the old value (if
//! any), back to back; their lengths are in `Kvfeed-Key-Len`,
//! `Kvfeed-Value-Len`, `Kvfeed-Old-Len` (a length header is absent when the
//! part is absent). Positions never decrease along the stream.

use async_nats::HeaderMap;
use bytes::{BufMut, Bytes, BytesMut};
use kvfeed::Kind;

/// Header: the message's position in kvfeed seq units.
pub const SEQ: &str = "Kvfeed-Seq";
/// Header: what the message is.
pub const KIND: &str = "Kvfeed-Kind";
/// Header: length of the key at the start of the payload.
pub const KEY_LEN: &str = "Kvfeed-Key-Len";
/// Header: length of the value, after the key.
pub const VALUE_LEN: &str = "Kvfeed-Value-Len";
/// Header: length of the old value, after the value.
pub const OLD_LEN: &str = "Kvfeed-Old-Len";
/// Header (snapshot items): the key's version.
pub const VERSION: &str = "Kvfeed-Version";
/// Header (lag markers): where live events continue (`at + 1`).
pub const RESUME_AT: &str = "Kvfeed-Resume-At";
/// Header (snapshot-done markers): the head when the snapshot scan ended.
pub const CONSISTENT_AT: &str = "Kvfeed-Consistent-At";
/// Header (snapshot-done markers): the stream sequence of the group's lag marker.
pub const GROUP_START: &str = "Kvfeed-Group-Start";

/// Subject suffixes.
pub(crate) const EV: &str = "ev";
pub(crate) const LAG: &str = "lag";
pub(crate) const SNAP: &str = "snap";
pub(crate) const DONE: &str = "done";

/// One decoded stream message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A live event.
    Event {
        /// Its kvfeed seq.
        seq: u64,
        /// Create, Update or Delete.
        kind: Kind,
        /// The key.
        key: Vec<u8>,
        /// The new value (Create, Update).
        value: Option<Vec<u8>>,
        /// The previous value (Update, Delete).
        old: Option<Vec<u8>>,
    },
    /// The publisher lost events; a recovery snapshot taken at `at` follows.
    Lagged {
        /// The snapshot's head: every seq up to it is covered by the snapshot.
        at: u64,
    },
    /// One live key of a recovery snapshot.
    SnapshotItem {
        /// The group's `at`.
        at: u64,
        /// The key's version (the seq of its latest event).
        version: u64,
        /// The key.
        key: Vec<u8>,
        /// Its value.
        value: Vec<u8>,
    },
    /// The end of a recovery snapshot.
    SnapshotDone {
        /// The group's `at`.
        at: u64,
        /// The head when the scan ended.
        consistent_at: u64,
        /// Stream sequence of the group's lag marker.
        group_start: u64,
    },
}

impl Record {
    /// The message's position (kvfeed seq units); never decreases along the stream.
    pub fn position(&self) -> u64 {
        match self {
            Record::Event { seq, .. } => *seq,
            Record::Lagged { at }
            | Record::SnapshotItem { at, .. }
            | Record::SnapshotDone { at, .. } => *at,
        }
    }
}

/// A message ready to publish: subject suffix, headers, payload, dedup id.
pub(crate) struct Outgoing {
    pub suffix: &'static str,
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub msg_id: String,
    /// The position acknowledged once this message is stored.
    pub position: u64,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Create => "create",
        Kind::Update => "update",
        Kind::Delete => "delete",
    }
}

fn payload(headers: &mut HeaderMap, key: &[u8], value: Option<&[u8]>, old: Option<&[u8]>) -> Bytes {
    let len = key.len() + value.map_or(0, <[u8]>::len) + old.map_or(0, <[u8]>::len);
    let mut buf = BytesMut::with_capacity(len);
    headers.insert(KEY_LEN, key.len().to_string().as_str());
    buf.put_slice(key);
    if let Some(v) = value {
        headers.insert(VALUE_LEN, v.len().to_string().as_str());
        buf.put_slice(v);
    }
    if let Some(o) = old {
        headers.insert(OLD_LEN, o.len().to_string().as_str());
        buf.put_slice(o);
    }
    buf.freeze()
}

/// A live event.
pub(crate) fn event(
    seq: u64,
    kind: Kind,
    key: &[u8],
    value: Option<&[u8]>,
    old: Option<&[u8]>,
) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(SEQ, seq.to_string().as_str());
    headers.insert(KIND, kind_name(kind));
    let payload = payload(&mut headers, key, value, old);
    Outgoing {
        suffix: EV,
        headers,
        payload,
        msg_id: format!("ev:{seq}"),
        position: seq,
    }
}

/// A lag marker opening a recovery group written at stream sequence `sseq`.
pub(crate) fn lagged(at: u64, sseq: u64) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(SEQ, at.to_string().as_str());
    headers.insert(KIND, "lagged");
    headers.insert(RESUME_AT, (at + 1).to_string().as_str());
    Outgoing {
        suffix: LAG,
        headers,
        payload: Bytes::new(),
        msg_id: format!("lag:{at}:{sseq}"),
        position: at,
    }
}

/// One snapshot item of the group opened at stream sequence `group`.
pub(crate) fn snapshot_item(
    at: u64,
    group: u64,
    version: u64,
    key: &[u8],
    value: &[u8],
) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(SEQ, at.to_string().as_str());
    headers.insert(KIND, "snapshot");
    headers.insert(VERSION, version.to_string().as_str());
    let payload = payload(&mut headers, key, Some(value), None);
    Outgoing {
        suffix: SNAP,
        headers,
        payload,
        msg_id: format!("snap:{at}:{group}:{version}"),
        position: at,
    }
}

/// The end of the group opened at stream sequence `group`.
pub(crate) fn snapshot_done(at: u64, consistent_at: u64, group: u64) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(SEQ, at.to_string().as_str());
    headers.insert(KIND, "snapshot-done");
    headers.insert(CONSISTENT_AT, consistent_at.to_string().as_str());
    headers.insert(GROUP_START, group.to_string().as_str());
    Outgoing {
        suffix: DONE,
        headers,
        payload: Bytes::new(),
        msg_id: format!("done:{at}:{group}"),
        position: at,
    }
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a kvfeed message: {}", self.0)
    }
}

impl std::error::Error for FormatError {}

fn num(headers: &HeaderMap, name: &str) -> Result<Option<u64>, FormatError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .parse()
            .map(Some)
            .map_err(|_| FormatError(format!("header {name} is not a number"))),
    }
}

fn need(headers: &HeaderMap, name: &str) -> Result<u64, FormatError> {
    num(headers, name)?.ok_or_else(|| FormatError(format!("header {name} missing")))
}

/// Key, value, old.
type Parts = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Splits the payload into key, value, old by the length headers.
fn parts(headers: &HeaderMap, payload: &[u8]) -> Result<Parts, FormatError> {
    let k = need(headers, KEY_LEN)? as usize;
    let v = num(headers, VALUE_LEN)?.map(|n| n as usize);
    let o = num(headers, OLD_LEN)?.map(|n| n as usize);
    let total = k + v.unwrap_or(0) + o.unwrap_or(0);
    if total != payload.len() {
        return Err(FormatError(format!(
            "lengths add up to {total} but the payload has {} bytes",
            payload.len()
        )));
    }
    let key = payload[..k].to_vec();
    let value = v.map(|n| payload[k..k + n].to_vec());
    let old = o.map(|n| payload[k + v.unwrap_or(0)..k + v.unwrap_or(0) + n].to_vec());
    Ok((key, value, old))
}

/// Decodes one stream message from its headers and payload.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Record, FormatError> {
    let headers = headers.ok_or_else(|| FormatError("no headers".into()))?;
    let seq = need(headers, SEQ)?;
    let kind = headers
        .get(KIND)
        .ok_or_else(|| FormatError(format!("header {KIND} missing")))?
        .as_str();
    let event_kind = match kind {
        "create" => Some(Kind::Create),
        "update" => Some(Kind::Update),
        "delete" => Some(Kind::Delete),
        _ => None,
    };
    if let Some(kind) = event_kind {
        let (key, value, old) = parts(headers, payload)?;
        return Ok(Record::Event {
            seq,
            kind,
            key,
            value,
            old,
        });
    }
    match kind {
        "lagged" => Ok(Record::Lagged { at: seq }),
        "snapshot" => {
            let (key, value, _) = parts(headers, payload)?;
            Ok(Record::SnapshotItem {
                at: seq,
                version: need(headers, VERSION)?,
                key,
                value: value.ok_or_else(|| FormatError("snapshot item without a value".into()))?,
            })
        }
        "snapshot-done" => Ok(Record::SnapshotDone {
            at: seq,
            consistent_at: need(headers, CONSISTENT_AT)?,
            group_start: need(headers, GROUP_START)?,
        }),
        other => Err(FormatError(format!("unknown {KIND} {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let cases = [
            (Kind::Create, Some(&b"v"[..]), None),
            (Kind::Update, Some(&b"new"[..]), Some(&b"old!"[..])),
            (Kind::Delete, None, Some(&b""[..])),
        ];
        for (i, (kind, value, old)) in cases.into_iter().enumerate() {
            let out = event(i as u64 + 1, kind, b"key", value, old);
            let rec = decode(Some(&out.headers), &out.payload).unwrap();
            assert_eq!(
                rec,
                Record::Event {
                    seq: i as u64 + 1,
                    kind,
                    key: b"key".to_vec(),
                    value: value.map(<[u8]>::to_vec),
                    old: old.map(<[u8]>::to_vec),
                }
            );
        }
    }

    #[test]
    fn markers_round_trip() {
        let l = lagged(9, 3);
        assert_eq!(
            decode(Some(&l.headers), &l.payload).unwrap(),
            Record::Lagged { at: 9 }
        );
        let s = snapshot_item(9, 3, 7, b"k", b"v");
        assert_eq!(
            decode(Some(&s.headers), &s.payload).unwrap(),
            Record::SnapshotItem {
                at: 9,
                version: 7,
                key: b"k".to_vec(),
                value: b"v".to_vec()
            }
        );
        let d = snapshot_done(9, 11, 3);
        assert_eq!(
            decode(Some(&d.headers), &d.payload).unwrap(),
            Record::SnapshotDone {
                at: 9,
                consistent_at: 11,
                group_start: 3
            }
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert!(decode(None, b"").is_err());
        let mut out = event(1, Kind::Create, b"key", Some(b"v"), None);
        assert!(decode(Some(&out.headers), b"short").is_err());
        out.headers.insert(KIND, "bogus");
        assert!(decode(Some(&out.headers), &out.payload).is_err());
    }
}
