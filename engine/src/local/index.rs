//! The sparse per-stream index: where a stream's records live in the shared segments.
//!
//! A stream keeps a short list of [`Point`]s, each naming a frame where a scan may start. Between
//! two points, all of the stream's frames are in the first point's segment, at or after its
//! position, so a read scans forward from the point, skipping other streams' frames by their
//! (checked) headers. A point is added only when a frame starts a new segment for the stream,
//! lies more than [`POINT_MAX_DISTANCE`] bytes after the last point, follows more than
//! [`POINT_EVERY_BYTES`] of the stream's payload, or follows a gap (records lost to corruption) or
//! a quarantined region: never one per record for a stream that writes steadily, and a stream
//! that is idle costs its points and nothing else.

use super::small::SmallDeque;

/// Where a scan for a stream's records may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Offset of the first record of the frame at `pos`.
    pub offset: u64,
    /// The stream's cumulative payload bytes before `offset` (in this incarnation).
    pub cum: u64,
    /// Segment sequence number.
    pub seg: u64,
    /// Byte position of the frame in the segment.
    pub pos: u64,
}

/// A new point is added at least every this many payload bytes of one stream.
pub const POINT_EVERY_BYTES: u64 = 32 << 10;
/// A scan from a point never has to cross more than about this many bytes of the segment.
pub const POINT_MAX_DISTANCE: u64 = 1 << 20;

/// The points of one stream, ascending by offset (and by log position). An idle stream has one
/// point: it is held inline, with no heap buffer.
#[derive(Clone, Debug, Default)]
pub struct Points {
    points: SmallDeque<Point>,
}

impl Points {
    /// Records a data frame of the stream at (`seg`, `pos`) holding offsets from `offset`,
    /// `contiguous` being false after a gap. `barrier` is a position of `seg` before which a
    /// scan must not start (a quarantined region ends there).
    pub fn note_frame(&mut self, p: Point, contiguous: bool, barrier: Option<u64>) {
        let need = match self.points.back() {
            None => true,
            Some(last) => {
                !contiguous
                    || last.seg != p.seg
                    || p.pos.saturating_sub(last.pos) > POINT_MAX_DISTANCE
                    || p.cum.saturating_sub(last.cum) > POINT_EVERY_BYTES
                    || barrier.is_some_and(|b| last.pos < b)
            }
        };
        if need {
            self.points.push_back(p);
        }
    }

    /// Drops points no longer needed once the first offset is `first` and the next one `next`:
    /// all but the last point at or below `first`, and every point when the stream holds no
    /// record (`first == next`, trimmed to its end): a point kept then would pin its segment
    /// against collection forever, for nothing to read. The next append notes a new point.
    pub fn trim(&mut self, first: u64, next: u64) {
        if first >= next {
            self.points.clear();
            return;
        }
        while self.points.get(1).is_some_and(|p| p.offset <= first) {
            self.points.pop_front();
        }
    }

    /// The index of the last point at or below `offset`.
    pub fn find(&self, offset: u64) -> Option<usize> {
        let n = self.points.partition_point(|p| p.offset <= offset);
        n.checked_sub(1)
    }

    /// The point at `i`.
    pub fn get(&self, i: usize) -> Option<&Point> {
        self.points.get(i)
    }

    /// Up to `n` points starting at `i`.
    pub fn window(&self, i: usize, n: usize) -> Vec<Point> {
        self.points.iter().skip(i).take(n).copied().collect()
    }

    /// All points, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Appends a point as is (checkpoint loading).
    pub fn push_raw(&mut self, p: Point) {
        self.points.push_back(p);
    }

    /// The last point at or below `cum` bytes (for byte-based retention).
    pub fn find_cum(&self, cum: u64) -> Option<usize> {
        let n = self.points.partition_point(|p| p.cum <= cum);
        n.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(offset: u64, seg: u64, pos: u64) -> Point {
        Point {
            offset,
            cum: offset * 100,
            seg,
            pos,
        }
    }

    #[test]
    fn sparse_for_steady_writers() {
        let mut p = Points::default();
        for i in 0..100u64 {
            p.note_frame(pt(i, 1, 64 + i * 200), true, None);
        }
        // 100 records of 100 bytes in one segment: well under the byte and distance limits.
        assert_eq!(p.len(), 1);
        p.note_frame(pt(100, 2, 64), true, None);
        assert_eq!(p.len(), 2);
        p.note_frame(pt(105, 2, 100), false, None);
        assert_eq!(p.len(), 3);
        assert_eq!(p.find(50), Some(0));
        assert_eq!(p.find(104), Some(1));
        p.trim(101, 106);
        assert_eq!(p.find(101), Some(0));
        assert_eq!(p.len(), 2);
        // Trimmed to its end: no record left, no point kept (it would pin its segment).
        p.trim(106, 106);
        assert_eq!(p.len(), 0);
    }
}
