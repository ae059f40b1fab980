//! A double-ended queue that holds zero or one element inline and allocates only from the second.
//!
//! Most streams are idle: their sparse index has one point and their tail cache one record. A
//! `VecDeque` would allocate room for four of each on the first push (its minimum capacity); this
//! keeps the single element in the stream itself and frees the heap buffer again when the queue
//! shrinks back to one element.

use std::collections::VecDeque;
use std::slice;

/// See the module documentation. Invariant: `Many` holds at least two elements.
#[derive(Clone, Debug, Default)]
pub(crate) enum SmallDeque<T> {
    /// No element.
    #[default]
    Empty,
    /// Exactly one element.
    One(T),
    /// Two or more elements.
    Many(VecDeque<T>),
}

impl<T> SmallDeque<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            SmallDeque::Empty => 0,
            SmallDeque::One(_) => 1,
            SmallDeque::Many(d) => d.len(),
        }
    }

    /// The elements in order, as two slices (the second may be empty).
    pub fn as_slices(&self) -> (&[T], &[T]) {
        match self {
            SmallDeque::Empty => (&[], &[]),
            SmallDeque::One(x) => (slice::from_ref(x), &[]),
            SmallDeque::Many(d) => d.as_slices(),
        }
    }

    /// The elements in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator + '_ {
        match self {
            SmallDeque::Many(d) => Iter::Many(d.iter()),
            other => Iter::Slice(other.as_slices().0.iter()),
        }
    }

    /// The element at `i`.
    pub fn get(&self, i: usize) -> Option<&T> {
        match self {
            SmallDeque::Empty => None,
            SmallDeque::One(x) => (i == 0).then_some(x),
            SmallDeque::Many(d) => d.get(i),
        }
    }

    /// The first element.
    pub fn front(&self) -> Option<&T> {
        self.get(0)
    }

    /// The last element.
    pub fn back(&self) -> Option<&T> {
        match self {
            SmallDeque::Empty => None,
            SmallDeque::One(x) => Some(x),
            SmallDeque::Many(d) => d.back(),
        }
    }

    /// The number of leading elements for which `pred` holds (`pred` must be true on a prefix).
    pub fn partition_point(&self, pred: impl FnMut(&T) -> bool) -> usize {
        match self {
            SmallDeque::Many(d) => d.partition_point(pred),
            other => other.as_slices().0.partition_point(pred),
        }
    }

    /// Appends `x`.
    pub fn push_back(&mut self, x: T) {
        *self = match std::mem::take(self) {
            SmallDeque::Empty => SmallDeque::One(x),
            SmallDeque::One(a) => {
                // Exactly two: a queue that stays at two elements costs two, not four.
                let mut d = VecDeque::with_capacity(2);
                d.push_back(a);
                d.push_back(x);
                SmallDeque::Many(d)
            }
            SmallDeque::Many(mut d) => {
                d.push_back(x);
                SmallDeque::Many(d)
            }
        };
    }

    /// Removes the first element; back to inline storage when one is left.
    pub fn pop_front(&mut self) -> Option<T> {
        match std::mem::take(self) {
            SmallDeque::Empty => None,
            SmallDeque::One(a) => Some(a),
            SmallDeque::Many(mut d) => {
                let first = d.pop_front();
                *self = Self::from_deque(d);
                first
            }
        }
    }

    /// Removes every element and frees the heap buffer.
    pub fn clear(&mut self) {
        *self = SmallDeque::Empty;
    }

    /// The queue holding `d`'s elements, inline if there are fewer than two (the buffer is freed).
    fn from_deque(mut d: VecDeque<T>) -> Self {
        match d.len() {
            0 => SmallDeque::Empty,
            1 => d.pop_front().map_or(SmallDeque::Empty, SmallDeque::One),
            _ => SmallDeque::Many(d),
        }
    }
}

/// The iterator of [`SmallDeque::iter`].
enum Iter<'a, T> {
    Slice(slice::Iter<'a, T>),
    Many(std::collections::vec_deque::Iter<'a, T>),
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        match self {
            Iter::Slice(i) => i.next(),
            Iter::Many(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Slice(i) => i.size_hint(),
            Iter::Many(i) => i.size_hint(),
        }
    }
}

impl<T> DoubleEndedIterator for Iter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Slice(i) => i.next_back(),
            Iter::Many(i) => i.next_back(),
        }
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_until_two_and_back() {
        let mut q = SmallDeque::default();
        assert!(q.len() == 0 && q.front().is_none() && q.back().is_none());
        q.push_back(1);
        assert!(matches!(q, SmallDeque::One(1)));
        q.push_back(2);
        q.push_back(3);
        assert_eq!(q.len(), 3);
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(q.iter().rev().copied().collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(
            (q.front(), q.back(), q.get(1), q.get(3)),
            (Some(&1), Some(&3), Some(&2), None)
        );
        assert_eq!(q.partition_point(|x| *x < 3), 2);
        assert_eq!(q.pop_front(), Some(1));
        assert_eq!(q.pop_front(), Some(2));
        assert!(matches!(q, SmallDeque::One(3)));
        assert_eq!(q.partition_point(|x| *x <= 3), 1);
        assert_eq!(q.iter().rev().copied().collect::<Vec<_>>(), [3]);
        assert_eq!(q.pop_front(), Some(3));
        assert_eq!(q.pop_front(), None);
        assert!(matches!(q, SmallDeque::Empty));
    }

    #[test]
    fn clear_frees() {
        let mut q = SmallDeque::default();
        for i in 0..5 {
            q.push_back(i);
        }
        q.clear();
        assert!(matches!(q, SmallDeque::Empty));
    }

    #[test]
    fn sizes() {
        // The point of the type: one element costs its own size plus a tag, no heap.
        assert!(std::mem::size_of::<SmallDeque<super::super::index::Point>>() <= 40);
        assert!(std::mem::size_of::<SmallDeque<crate::types::Record>>() <= 56);
    }
}
