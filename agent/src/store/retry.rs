//! Retry with capped exponential backoff and a deadline.
//!
//! etcd-client keeps sending some requests to a dead member of a multi-member cluster (the
//! balanced channel does not evict it), and a leader election makes requests fail for about
//! a second. Both surface as transient errors; retrying them is what keeps a command working
//! while one member of three is down.

use std::future::Future;
use std::time::Duration;

use super::error::{StoreError, is_transient};

/// First pause after a transient failure.
pub const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between two attempts.
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long one logical request may keep retrying before it is reported as unavailable.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Upper bound on one attempt, so a member that accepts the connection and then stalls
/// cannot eat the whole deadline.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `op` until it succeeds, fails with a non-transient error, or `deadline` passes.
pub async fn with_retry<T, F, Fut>(
    endpoints: &str,
    what: &str,
    deadline: Duration,
    op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    with_retry_until(endpoints, what, || deadline, op).await
}

/// Like [`with_retry`], with a deadline asked again before every attempt and every retry,
/// so a request already under way gives up early once the deadline shrinks (the store
/// learnt that etcd is unreachable).
pub async fn with_retry_until<T, F, Fut>(
    endpoints: &str,
    what: &str,
    deadline: impl Fn() -> Duration,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = RETRY_INITIAL_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        // No attempt runs past the request's deadline.
        let attempt_timeout = ATTEMPT_TIMEOUT.min(deadline().saturating_sub(started.elapsed()));
        let result = match tokio::time::timeout(attempt_timeout, op()).await {
            Ok(result) => result,
            Err(_) => Err(etcd_client::Error::GRpcStatus(tonic::Status::unavailable(
                format!("no answer within {attempt_timeout:?}"),
            ))),
        };
        match result {
            Ok(value) => return Ok(value),
            Err(err) if is_transient(&err) => {
                if started.elapsed() + backoff >= deadline() {
                    return Err(StoreError::Unavailable {
                        endpoints: endpoints.to_owned(),
                        what: what.to_owned(),
                        attempts,
                        source: err,
                    });
                }
                tracing::debug!(what, attempts, error = %err, "etcd request failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX_BACKOFF);
            }
            Err(err) => {
                return Err(StoreError::Failed {
                    what: what.to_owned(),
                    source: err,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn unavailable() -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::unavailable("leader changed"))
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let got = with_retry("e", "get", Duration::from_secs(5), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(unavailable())
            } else {
                Ok(7)
            }
        })
        .await
        .expect("succeeds on the fourth attempt");
        assert_eq!(got, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_turns_transient_errors_into_unavailable() {
        let err = with_retry("http://x:1", "get /k", Duration::from_secs(2), || async {
            Err::<(), _>(unavailable())
        })
        .await
        .expect_err("never succeeds");
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("http://x:1"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_under_way_gives_up_when_its_deadline_shrinks() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let deadline = || {
            // Etcd is found unreachable (by someone else) after the second attempt.
            if calls.load(Ordering::SeqCst) < 2 {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(1)
            }
        };
        let err = with_retry_until("e", "get", deadline, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(unavailable())
        })
        .await
        .expect_err("never succeeds");
        assert!(err.is_unavailable(), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "gave up after {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let err = with_retry("e", "put", Duration::from_secs(5), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(etcd_client::Error::GRpcStatus(
                tonic::Status::invalid_argument("too many operations in txn request"),
            ))
        })
        .await
        .expect_err("fails");
        assert!(!err.is_unavailable());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
