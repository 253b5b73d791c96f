//! The bounded buffer between the agent and the sink's writer task.
//!
//! The agent pushes, the writer takes batches. Pushing never waits for the writer or the
//! network: it is a few operations under a std mutex that nothing holds across an `.await`.
//! When the buffer is full the **oldest** point is dropped and counted, so an outage of the
//! time-series server costs the oldest data, never memory and never the agent's loop.
//!
//! Bound: at most `capacity` points queued, plus the one batch the writer holds (at most
//! its batch size). A batch that failed goes back to the front of the queue, where the
//! same rule drops its oldest points if new ones have filled the queue meanwhile.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::point::Point;

/// Counters of the buffer and its writer, read by `/metrics` and the `gru_agent` points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Points waiting, including the batch being written.
    pub buffered: usize,
    pub capacity: usize,
    pub dropped_overflow: u64,
    pub dropped_rejected: u64,
    pub written: u64,
    /// Failed write attempts (each one retried later).
    pub write_errors: u64,
}

impl BufferStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_overflow + self.dropped_rejected
    }
}

#[derive(Debug)]
pub struct PointBuffer {
    capacity: usize,
    /// A push that brings the queue to this many points wakes the writer early.
    batch_points: usize,
    queue: Mutex<VecDeque<Point>>,
    in_flight: AtomicUsize,
    dropped_overflow: AtomicU64,
    dropped_rejected: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
    /// Added to each point's nanoseconds (modulo 1000) so that two points of the same
    /// series in the same millisecond (two actions, say) stay two points in InfluxDB.
    sequence: AtomicU64,
    pub(super) ready: Notify,
}

impl PointBuffer {
    /// A buffer of at most `capacity` points (at least 1) that wakes its writer once
    /// `batch_points` are waiting.
    pub fn new(capacity: usize, batch_points: usize) -> PointBuffer {
        PointBuffer {
            capacity: capacity.max(1),
            batch_points: batch_points.max(1),
            queue: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            dropped_overflow: AtomicU64::new(0),
            dropped_rejected: AtomicU64::new(0),
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
            ready: Notify::new(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Point>> {
        // A panic under this lock cannot leave the queue half-changed in a way that
        // matters (each operation is one push or pop), so a poisoned lock is taken over.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one point; never waits. A full buffer drops its oldest point.
    pub fn push(&self, mut point: Point) {
        let offset = (self.sequence.fetch_add(1, Ordering::Relaxed) % 1000) as i64;
        point.timestamp_ns = point.timestamp_ns.saturating_add(offset);
        let len = {
            let mut queue = self.queue();
            if queue.len() >= self.capacity {
                queue.pop_front();
                self.dropped_overflow.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back(point);
            queue.len()
        };
        if len == self.batch_points {
            self.ready.notify_one();
        }
    }

    /// Queues every point of `points`, in order.
    pub fn extend(&self, points: impl IntoIterator<Item = Point>) {
        for point in points {
            self.push(point);
        }
    }

    /// Takes up to `max` of the oldest points for writing; they count as buffered until
    /// [`Self::written`], [`Self::rejected`] or [`Self::requeue`] settles them.
    pub fn take(&self, max: usize) -> Vec<Point> {
        let mut queue = self.queue();
        let n = max.min(queue.len());
        let batch: Vec<Point> = queue.drain(..n).collect();
        self.in_flight.store(batch.len(), Ordering::Relaxed);
        batch
    }

    pub fn written(&self, n: usize) {
        self.in_flight.store(0, Ordering::Relaxed);
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn rejected(&self, n: usize) {
        self.in_flight.store(0, Ordering::Relaxed);
        self.dropped_rejected.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Puts a batch that could not be written back in front, then drops the oldest points
    /// beyond the capacity.
    pub fn requeue(&self, batch: Vec<Point>) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        let mut queue = self.queue();
        for point in batch.into_iter().rev() {
            queue.push_front(point);
        }
        let excess = queue.len().saturating_sub(self.capacity);
        queue.drain(..excess);
        self.dropped_overflow
            .fetch_add(excess as u64, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.queue().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> BufferStats {
        BufferStats {
            buffered: self.len() + self.in_flight.load(Ordering::Relaxed),
            capacity: self.capacity,
            dropped_overflow: self.dropped_overflow.load(Ordering::Relaxed),
            dropped_rejected: self.dropped_rejected.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mape::Millis;

    fn point(i: u64) -> Point {
        Point::new("gru_test", Millis(i)).integer("i", i as i64)
    }

    fn ids(points: &[Point]) -> Vec<i64> {
        points
            .iter()
            .map(|p| match p.field("i") {
                Some(super::super::point::FieldValue::Integer(i)) => i,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_full_buffer_drops_its_oldest_points_and_counts_them() {
        let buffer = PointBuffer::new(3, 100);
        for i in 0..5 {
            buffer.push(point(i));
        }
        let stats = buffer.stats();
        assert_eq!((stats.buffered, stats.dropped_overflow), (3, 2));
        assert_eq!(ids(&buffer.take(10)), vec![2, 3, 4]);
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_within_the_bound() {
        let buffer = PointBuffer::new(4, 100);
        for i in 0..4 {
            buffer.push(point(i));
        }
        let batch = buffer.take(2);
        assert_eq!(buffer.stats().buffered, 4, "the batch still counts");
        for i in 4..7 {
            buffer.push(point(i));
        }
        // The push of 6 found the queue full and dropped 2; the batch [0, 1] then comes
        // back in front and, being the oldest, is what the bound drops.
        buffer.requeue(batch);
        let stats = buffer.stats();
        assert_eq!(stats.buffered, 4);
        assert_eq!(stats.dropped_overflow, 1 + 2);
        assert_eq!(stats.write_errors, 1);
        assert_eq!(ids(&buffer.take(10)), vec![3, 4, 5, 6]);
    }

    #[test]
    fn written_and_rejected_batches_are_counted() {
        let buffer = PointBuffer::new(10, 100);
        buffer.extend((0..5).map(point));
        let batch = buffer.take(3);
        buffer.written(batch.len());
        let batch = buffer.take(3);
        buffer.rejected(batch.len());
        let stats = buffer.stats();
        assert_eq!(
            (stats.buffered, stats.written, stats.dropped_rejected),
            (0, 3, 2)
        );
        assert_eq!(stats.dropped(), 2);
    }

    #[test]
    fn points_of_one_millisecond_get_distinct_nanoseconds() {
        let buffer = PointBuffer::new(10, 100);
        buffer.push(point(7));
        buffer.push(point(7));
        let batch = buffer.take(2);
        assert_eq!(batch[0].timestamp_ns, 7_000_000);
        assert_eq!(batch[1].timestamp_ns, 7_000_001);
    }
}
