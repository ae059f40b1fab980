//! The decision step: each operation of a group, in order, against the committed state plus the
//! group's earlier operations (expire, create, append, seal, delete, retention).

use crate::implementor::ErrorShorthand;
use std::io;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::error::{Error, ErrorKind};
use crate::head::{Decision, StreamHead};
use crate::types::{AppendResult, IdempotencyKey, Incarnation, Record, Retention, StreamId};
use crate::validate::now_ms;

use super::super::codec::{put_retention, Put};
use super::super::format::{self, FrameHeader, FLAG_KEY};
use super::super::index::Point;
use super::group::{Group, Work};
use super::ops::{AppendOp, Op, Rejection, Reply};
use super::trim::TrimError;
use super::Writer;

impl Writer {
    /// The stream as this group sees it (on first touch: as the last group still being synced
    /// left it, else the committed one).
    pub(super) fn work<'g>(&mut self, g: &'g mut Group, id: &StreamId) -> Option<&'g mut Work> {
        if !g.work.contains_key(id) {
            if self
                .overlay
                .get(id)
                .is_some_and(|(_, w)| w.as_ref().is_some_and(|w| w.keyed))
            {
                // Its key window is only complete in the committed state.
                self.drain();
            }
            let w = match self.overlay.get(id) {
                Some((_, None)) => return None,
                Some((_, Some(w))) => Work {
                    number: w.number,
                    head: w.head.clone(),
                    cum_first: w.cum_first,
                    fresh: false,
                    frames: SmallVec::new(),
                    pending: SmallVec::new(),
                    trimmed: false,
                    reincarnated: false,
                },
                None => {
                    let st = self.state();
                    let s = st.streams.get(id)?;
                    Work {
                        number: s.number,
                        head: s.head.clone(),
                        cum_first: s.cum_first,
                        fresh: false,
                        frames: SmallVec::new(),
                        pending: SmallVec::new(),
                        trimmed: false,
                        reincarnated: false,
                    }
                }
            };
            g.work.insert(id.clone(), Some(w));
        }
        g.work.get_mut(id).and_then(Option::as_mut)
    }

    /// Deletes the stream in this group (logs a `Delete` frame).
    pub(super) fn delete(&mut self, g: &mut Group, id: &StreamId) -> io::Result<bool> {
        let Some(number) = self.work(g, id).map(|w| w.number) else {
            return Ok(false);
        };
        let now = g.now;
        self.emit(g, &FrameHeader::delete(number, now), &[])?;
        if let Some(Some(w)) = g.work.insert(id.clone(), None) {
            if !w.fresh {
                g.deleted.insert(id.clone());
            }
        }
        Ok(true)
    }

    /// Applies time-based retention to `id` before an operation touches it.
    pub(super) fn expire(&mut self, g: &mut Group, id: &StreamId, now: u64) -> io::Result<()> {
        let due = self.work(g, id).is_some_and(|w| w.head.is_expired(now));
        if due {
            self.delete(g, id)?;
        }
        Ok(())
    }

    /// Decides and encodes one operation. `Err` only for I/O failures (which fail the group).
    pub(super) fn apply_op(&mut self, g: &mut Group, op: Op) -> io::Result<()> {
        let now = g.now;
        match op {
            Op::Append(a) => self.apply_append(g, a)?,
            Op::Seal { stream, tx } => {
                self.expire(g, &stream, now)?;
                let Some(w) = self.work(g, &stream) else {
                    let e = Error::not_found(&stream);
                    g.replies.push(Reply::Rejected(Rejection::Info(tx), e));
                    return Ok(());
                };
                if w.head.sealed_ms.is_none() {
                    let (number, next) = (w.number, w.head.next_offset);
                    w.head.sealed_ms = Some(now);
                    self.emit(g, &FrameHeader::seal(number, next, now), &[])?;
                }
                let info = self
                    .work(g, &stream)
                    .map(|w| w.head.info(&stream))
                    .ok_or_else(|| io::Error::other("sealed stream vanished"))?;
                g.replies.push(Reply::Info(tx, info));
            }
            Op::Trim { stream, before, tx } => {
                self.expire(g, &stream, now)?;
                let Some(w) = self.work(g, &stream) else {
                    let e = Error::not_found(&stream);
                    g.replies.push(Reply::Rejected(Rejection::Offset(tx), e));
                    return Ok(());
                };
                let target = w.head.trim_target(before);
                match self.trim(g, &stream, target) {
                    Ok(first) => g.replies.push(Reply::Offset(tx, first)),
                    Err(TrimError::Io(e)) => return Err(e),
                    Err(TrimError::Store(e)) => {
                        g.replies.push(Reply::Rejected(Rejection::Offset(tx), e));
                    }
                }
            }
            Op::Delete { stream, tx } => {
                let existed = self.delete(g, &stream)?;
                g.replies.push(Reply::Existed(tx, existed));
            }
            Op::SetRetention {
                stream,
                retention,
                tx,
            } => {
                let Some(w) = self.work(g, &stream) else {
                    let e = Error::not_found(&stream);
                    g.replies.push(Reply::Rejected(Rejection::Done(tx), e));
                    return Ok(());
                };
                w.head.retention = retention;
                let (number, next) = (w.number, w.head.next_offset);
                let mut body = Vec::new();
                put_retention(&mut body, &retention);
                self.emit(g, &FrameHeader::retention(number, next, now), &body)?;
                self.enforce_max_bytes(g, &stream)?;
                g.replies.push(Reply::Done(tx));
            }
            Op::Sweep => {
                let due: Vec<StreamId> = self
                    .state()
                    .streams
                    .iter()
                    .filter(|(_, s)| s.head.is_expired(now))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in due {
                    self.expire(g, &id, now)?;
                }
            }
            Op::Checkpoint { tx } => g.checkpoint.push(tx),
            Op::Close { tx } => g.close = Some(tx),
        }
        Ok(())
    }

    /// Decides and encodes one append.
    fn apply_append(&mut self, g: &mut Group, a: AppendOp) -> io::Result<()> {
        let now = g.now;
        let AppendOp {
            stream,
            records,
            bytes,
            expect,
            key,
            tx,
        } = a;
        self.expire(g, &stream, now)?;
        let decision = {
            let head = self.work(g, &stream).map(|w| &w.head);
            StreamHead::decide(
                &stream,
                head,
                expect,
                key.as_ref().map(|(k, d)| (k, *d)),
                now,
            )
        };
        match decision {
            Err(e) => g.replies.push(Reply::Rejected(Rejection::Append(tx), e)),
            Ok(Decision::Duplicate(r)) => g.replies.push(Reply::Append(tx, r)),
            Ok(Decision::Write {
                timestamp_ms,
                create,
                ..
            }) => {
                let written = (|| {
                    if create {
                        self.create(g, &stream, now)?;
                    }
                    let r = self.append(g, &stream, records, bytes, timestamp_ms, key)?;
                    self.enforce_max_bytes(g, &stream)?;
                    Ok(r)
                })();
                match written {
                    Ok(r) => g.replies.push(Reply::Append(tx, r)),
                    Err(e) => {
                        // The group fails with this error (a roll's write or sync): this append
                        // learns it, rather than `Closed` from a dropped reply.
                        let msg = format!("the log write failed: {e}");
                        let _ = tx.send(Err(Error::new(ErrorKind::Poisoned, msg)));
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts a new incarnation of `id` (logs a `Create` frame).
    pub(super) fn create(&mut self, g: &mut Group, id: &StreamId, now: u64) -> io::Result<()> {
        let number = self.next_number;
        self.next_number += 1;
        let head = StreamHead::new(now, Retention::default());
        let mut body = Vec::new();
        body.bytes16(id.as_str().as_bytes());
        let frame = FrameHeader::create(number, head.incarnation.0, now);
        self.emit(g, &frame, &body)?;
        let w = Work {
            number,
            head,
            cum_first: 0,
            fresh: true,
            frames: SmallVec::new(),
            pending: SmallVec::new(),
            trimmed: false,
            reincarnated: false,
        };
        g.work.insert(id.clone(), Some(w));
        Ok(())
    }

    /// Starts this session before any operation is accepted: logs the `Reincarnate` frames
    /// recovery asked for (`ids`: streams whose unsynced records a crash may have taken) and then
    /// the session's `Open` frame, in one write and one sync.
    ///
    /// The order is what makes a crash during open safe: the `Open` frame records this session's
    /// durability, and a later recovery trusts a `Sync` session to have lost nothing. Were the
    /// `Open` frame synced before the new incarnations, a crash between the two would leave a
    /// `Sync` session and no reincarnation, and offsets readers had seen would be handed out
    /// again under the same incarnation. Written before it, in the same group, the `Open` frame
    /// is durable only with them: a torn write that kept it without them leaves invalid bytes
    /// before a valid frame at the end of the log, a torn tail that recovery cuts (the `Open`
    /// frame with it), so the next open sees the unclean non-`Sync` session again and
    /// reincarnates again.
    pub(crate) fn open_session(&mut self, ids: &[StreamId]) -> io::Result<()> {
        let mut g = Group::at(now_ms());
        for id in ids {
            let Some((number, next)) = self
                .work(&mut g, id)
                .map(|w| (w.number, w.head.next_offset))
            else {
                continue;
            };
            let inc = Incarnation::random();
            let frame = FrameHeader::reincarnate(number, next, inc.0, now_ms());
            self.emit(&mut g, &frame, &[])?;
            if let Some(w) = self.work(&mut g, id) {
                w.head.incarnation = inc;
                w.reincarnated = true;
            }
        }
        let code = self.durability.code();
        self.emit(&mut g, &FrameHeader::open(code, now_ms()), &[])?;
        self.write_group(&mut g)?;
        self.sync()?;
        self.publish(&mut g);
        Ok(())
    }

    /// Logs a data frame and applies the append to the group's view.
    pub(super) fn append(
        &mut self,
        g: &mut Group,
        id: &StreamId,
        records: Vec<Bytes>,
        bytes: u64,
        timestamp: u64,
        key: Option<(IdempotencyKey, u64)>,
    ) -> io::Result<AppendResult> {
        let (number, first, cum) = match self.work(g, id) {
            Some(w) => (w.number, w.head.next_offset, w.cum_next()),
            None => return Err(io::Error::other("append to a stream that does not exist")),
        };
        let flags = if key.is_some() { FLAG_KEY } else { 0 };
        let count = u32::try_from(records.len()).map_err(io::Error::other)?;
        let key_ref = key.as_ref().map(|(k, d)| (k, *d));
        let frame = FrameHeader::data(number, first, cum, timestamp, count).with_flags(flags);
        let body_len = format::data_body_len(key_ref.map(|(k, _)| k), &records);
        let (seg, pos) = self.emit_with(g, &frame, body_len, |b| {
            format::encode_data_body(b, key_ref, &records);
        })?;
        g.appended.appends += 1;
        g.appended.records += u64::from(count);
        g.appended.bytes += bytes;
        let cap = self.key_capacity();
        let w = self
            .work(g, id)
            .ok_or_else(|| io::Error::other("stream vanished"))?;
        w.frames.push(Point {
            offset: first,
            cum,
            seg,
            pos,
        });
        w.pending.extend(
            records
                .into_iter()
                .zip(first..)
                .map(|(payload, offset)| Record {
                    offset,
                    timestamp_ms: timestamp,
                    payload,
                }),
        );
        Ok(w.head
            .apply_append(count.into(), bytes, timestamp, key, cap))
    }
}
