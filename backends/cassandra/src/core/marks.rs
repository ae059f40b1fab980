//! The watcher's marks: for each waited-on stream, a value that moves with every change a
//! waiting reader could notice (the batched head read of the shared watcher, `HeadSource`).
//!
//! A stream's head row lives in the partition `(sid, inc, bucket)` of its current bucket, so a
//! pass reads one partition per stream. How those reads are issued was measured side by side
//! (`tests/marks.rs`, docs/benchmarks.md): multi-partition reads of [`MARKS_CHUNK`] streams
//! each, [`MARKS_IN_FLIGHT`] at a time, took a third of the time of single-partition reads
//! 32 at a time. Cassandra allows `IN` on each partition-key column but not on their tuple, so
//! a statement asks for the cartesian product `sid IN … AND inc IN … AND bucket IN …`
//! (incarnations are random: `n` streams make about `n²` partition keys, all but `n` absent and
//! rejected by the bloom filters). The server's cost per statement dominates its cost per
//! absent partition key up to about 10 streams a statement; at 50 the product loses.
//!
//! Only streams whose head location the store remembers go through the multi-partition read
//! (the head found open there is the stream's current state, as in [`Core::state`]); the others,
//! and every stream of a statement that failed (for instance a server whose
//! `partition_keys_in_select` guardrail refuses the product), take the single-partition path,
//! which reports the error if it persists.

use super::*;
use crate::model::HeadColumns;

/// Streams per multi-partition head read (measured in `tests/marks.rs`: 4 to 16 alike, 50 three
/// times slower).
pub(crate) const MARKS_CHUNK: usize = 10;

/// Head reads a pass keeps in flight (statements of [`MARKS_CHUNK`] streams, or single-partition
/// reads). One driver connection multiplexes them.
pub(crate) const MARKS_IN_FLIGHT: usize = 64;

/// How a pass reads the heads (a test seam: `tests/marks.rs` measures each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarksMethod {
    /// Single-partition prepared reads of the head rows, this many in flight (what the
    /// watcher used before, with 32).
    Concurrent(usize),
    /// One multi-partition read per `chunk` streams whose head location the store knows (`IN`
    /// on each partition-key column: the cartesian product of their ids, incarnations and
    /// buckets), `in_flight` such reads at a time; the other streams as
    /// `Concurrent(in_flight)`. The watcher uses `In { chunk: 10, in_flight: 64 }`.
    In {
        /// Streams per statement.
        chunk: usize,
        /// Statements in flight.
        in_flight: usize,
    },
}

/// What one multi-partition statement found: the marks, and the streams left to the
/// single-partition reads.
type ChunkMarks = (Vec<(StreamId, u64)>, Vec<StreamId>);

/// The mark of the open head `h` at `loc` (see [`mark_at`]), and whether it expired.
fn mark(loc: Loc, h: &Head) -> (u64, bool) {
    (mark_at(loc, h.ver), h.expired(now_ms()))
}

/// The mark of the head of version `ver` at `loc`: its incarnation, bucket and version mixed.
/// Change hints (`hints.rs`) carry the same value for the head a write left.
pub(super) fn mark_at(loc: Loc, ver: i64) -> u64 {
    let mut m = foldhash_like(loc.inc);
    m = foldhash_like(m ^ loc.bucket);
    m = foldhash_like(m ^ ver);
    u64::from_le_bytes(m.to_le_bytes())
}

pub(super) fn bigint(v: Option<&CqlValue>) -> Result<Option<i64>> {
    match v {
        None => Ok(None),
        Some(CqlValue::BigInt(x)) => Ok(Some(*x)),
        Some(other) => Err(decode_error(&format!("a head column holds {other:?}"))),
    }
}

/// A row of the multi-partition head read (`heads_in`): its stream id, location and head.
fn decode_in_row(row: Row) -> Result<(String, Loc, Head)> {
    let c: Vec<Option<CqlValue>> = row.columns;
    let at = |i: usize| c.get(i).and_then(Option::as_ref);
    let Some(CqlValue::Text(sid)) = at(0) else {
        return Err(decode_error(&"a head row without its sid"));
    };
    let need = |i: usize| {
        bigint(at(i))?.ok_or_else(|| Error::new(ErrorKind::Corruption, "a head row lacks a key"))
    };
    let loc = Loc {
        inc: need(1)?,
        bucket: need(2)?,
    };
    Ok((sid.clone(), loc, head_at(&c, 3)?))
}

/// The head whose `HEAD_COLUMNS` start at column `start` of a row read as cells.
pub(super) fn head_at(c: &[Option<CqlValue>], start: usize) -> Result<Head> {
    let at = |i: usize| c.get(start + i).and_then(Option::as_ref);
    let b = |i: usize| bigint(at(i));
    let closed = match at(7) {
        None => None,
        Some(CqlValue::TinyInt(x)) => Some(*x),
        Some(other) => return Err(decode_error(&format!("closed holds {other:?}"))),
    };
    let cols: HeadColumns = (
        b(0)?,
        b(1)?,
        b(2)?,
        b(3)?,
        b(4)?,
        b(5)?,
        b(6)?,
        closed,
        b(8)?,
        b(9)?,
        b(10)?,
        b(11)?,
        b(12)?,
        b(13)?,
        b(14)?,
    );
    Head::from_columns(cols)
}

impl Core {
    /// For each of `streams` that exists, its mark (see the module docs).
    pub(crate) async fn heads_marks(&self, streams: &[StreamId]) -> Result<Vec<(StreamId, u64)>> {
        self.marks_in(streams, MARKS_CHUNK, MARKS_IN_FLIGHT).await
    }

    /// [`Core::heads_marks`] read by `method` (the measurement's seam).
    pub(crate) async fn heads_marks_by(
        &self,
        streams: &[StreamId],
        method: MarksMethod,
    ) -> Result<Vec<(StreamId, u64)>> {
        match method {
            MarksMethod::Concurrent(n) => self.marks_concurrent(streams, n).await,
            MarksMethod::In { chunk, in_flight } => self.marks_in(streams, chunk, in_flight).await,
        }
    }

    /// Marks by single-partition reads through [`Core::live`] (the cached head location, or the
    /// `streams` row and the heads after it), `n` in flight.
    async fn marks_concurrent(
        &self,
        streams: &[StreamId],
        n: usize,
    ) -> Result<Vec<(StreamId, u64)>> {
        let marks: Vec<Option<(StreamId, u64)>> = stream::iter(streams.iter().cloned())
            .map(|id| async move {
                Ok::<_, Error>(self.live(&id).await?.map(|(loc, h)| (id, mark(loc, &h).0)))
            })
            .buffered(n.max(1))
            .try_collect()
            .await?;
        Ok(marks.into_iter().flatten().collect())
    }

    /// Marks by multi-partition reads of the heads at the cached locations, `chunk` streams a
    /// statement, `in_flight` statements at a time. A head found open there is the stream's
    /// current state (as in [`Core::state`]); any other stream goes through
    /// [`Core::marks_concurrent`].
    async fn marks_in(
        &self,
        streams: &[StreamId],
        chunk: usize,
        in_flight: usize,
    ) -> Result<Vec<(StreamId, u64)>> {
        let mut rest = Vec::new();
        let mut known = Vec::new();
        for s in streams {
            match self.cached_loc(s) {
                Some(loc) => known.push((s.clone(), loc)),
                None => rest.push(s.clone()),
            }
        }
        let parts: Vec<ChunkMarks> = stream::iter(known.chunks(chunk.max(1)).map(<[_]>::to_vec))
            .map(|part| async move {
                // A failed statement leaves its streams to the single-partition reads.
                match self.marks_in_chunk(&part).await {
                    Ok(done) => done,
                    Err(_) => (Vec::new(), part.into_iter().map(|(s, _)| s).collect()),
                }
            })
            .buffer_unordered(in_flight.max(1))
            .collect()
            .await;
        let mut out = Vec::with_capacity(streams.len());
        for (marks, others) in parts {
            out.extend(marks);
            rest.extend(others);
        }
        out.extend(self.marks_concurrent(&rest, in_flight).await?);
        Ok(out)
    }

    /// One statement of [`Core::marks_in`]: the marks found, and the streams whose cached
    /// location no longer holds an open head.
    async fn marks_in_chunk(&self, part: &[(StreamId, Loc)]) -> Result<ChunkMarks> {
        let sids: Vec<&str> = part.iter().map(|(s, _)| s.as_str()).collect();
        let mut incs: Vec<i64> = part.iter().map(|(_, l)| l.inc).collect();
        let mut buckets: Vec<i64> = part.iter().map(|(_, l)| l.bucket).collect();
        for v in [&mut incs, &mut buckets] {
            v.sort_unstable();
            v.dedup();
        }
        let found: Vec<Row> = rows(self.exec(&self.st.heads_in, (sids, incs, buckets)).await?)?;
        let mut heads = HashMap::with_capacity(found.len());
        for row in found {
            let (sid, loc, head) = decode_in_row(row)?;
            heads.insert((sid, loc.inc, loc.bucket), head);
        }
        let (mut out, mut rest) = (Vec::with_capacity(part.len()), Vec::new());
        for (s, loc) in part {
            match heads.get(&(s.as_str().to_owned(), loc.inc, loc.bucket)) {
                Some(h) if h.closed == OPEN => {
                    let (m, expired) = mark(*loc, h);
                    if !expired {
                        out.push((s.clone(), m));
                    }
                }
                _ => {
                    self.forget_loc(s);
                    rest.push(s.clone());
                }
            }
        }
        Ok((out, rest))
    }
}
