//! Admission: which request is worked on, which waits, which is turned away.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Two semaphores. `admitted` has `concurrency + queue` permits and bounds everything the
/// service holds: a request that cannot get one at once is answered 503 instead of queueing
/// without bound. `working` has `concurrency` permits and bounds what is being worked on;
/// tokio's semaphore is fair, so waiting requests start first-come, first-served.
#[derive(Debug, Clone)]
pub struct Admission {
    admitted: Arc<Semaphore>,
    working: Arc<Semaphore>,
}

/// A request that holds a place (queued or working). Dropping it gives the place back.
#[derive(Debug)]
pub struct Admitted {
    place: OwnedSemaphorePermit,
    working: Arc<Semaphore>,
}

/// A request that is being worked on. Dropping it frees the worker and the place.
#[derive(Debug)]
pub struct Working {
    _place: OwnedSemaphorePermit,
    _worker: OwnedSemaphorePermit,
}

impl Admission {
    /// `concurrency` must be at least 1 (the settings ensure it).
    pub fn new(concurrency: usize, queue: usize) -> Self {
        Self {
            admitted: Arc::new(Semaphore::new(concurrency.saturating_add(queue))),
            working: Arc::new(Semaphore::new(concurrency)),
        }
    }

    /// A place for the request, or `None` when the workers are busy and the queue is full.
    pub fn try_admit(&self) -> Option<Admitted> {
        let place = Arc::clone(&self.admitted).try_acquire_owned().ok()?;
        Some(Admitted {
            place,
            working: Arc::clone(&self.working),
        })
    }
}

impl Admitted {
    /// Waits in the queue for a worker.
    pub async fn start(self) -> Working {
        let worker = self
            .working
            .acquire_owned()
            .await
            .expect("the working semaphore is never closed");
        Working {
            _place: self.place,
            _worker: worker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_workers_and_queue_requests_are_turned_away() {
        let admission = Admission::new(1, 2);
        let held: Vec<_> = (0..3).map(|_| admission.try_admit()).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(
            admission.try_admit().is_none(),
            "1 worker + 2 queued is full"
        );
        drop(held);
        assert!(
            admission.try_admit().is_some(),
            "places come back when requests end"
        );
    }

    #[tokio::test]
    async fn a_queued_request_starts_when_the_worker_is_free() {
        let admission = Admission::new(1, 1);
        let first = admission.try_admit().expect("place").start().await;
        let second = admission.try_admit().expect("place");
        let mut waiting = tokio::spawn(second.start());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the only worker is busy");
        drop(first);
        let _second = (&mut waiting).await.expect("second starts");
    }
}
