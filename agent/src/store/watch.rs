//! A watch on a key prefix that survives etcd restarts: changed keys come out of a bounded
//! channel; after the stream broke and was opened again, a `Resynced` tells the reader that
//! changes may have been missed and it should read everything again.

use std::time::Duration;

use etcd_client::WatchOptions;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Store;

/// Capacity of the change channel; when full the watcher waits (the reader reloads on each
/// message anyway, so a burst costs latency, not correctness).
pub const WATCH_CHANNEL_LEN: usize = 64;
const WATCH_MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Keys put (with their new value) or deleted (`None`).
    Changed(Vec<(String, Option<String>)>),
    /// The watch was re-established; changes in between may be lost.
    Resynced,
}

impl Store {
    /// Watches every key under `prefix` until `cancel` fires or the receiver is dropped.
    pub fn watch_prefix(
        &self,
        prefix: &str,
        cancel: CancellationToken,
    ) -> mpsc::Receiver<WatchEvent> {
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL_LEN);
        let store = self.clone();
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            let mut first = true;
            while !cancel.is_cancelled() && !tx.is_closed() {
                let mut client = store.client();
                let opened = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.watch(prefix.as_str(), Some(WatchOptions::new().with_prefix())),
                )
                .await;
                match opened {
                    Ok(Ok(mut stream)) => {
                        if !first && tx.send(WatchEvent::Resynced).await.is_err() {
                            return;
                        }
                        backoff = Duration::from_millis(200);
                        loop {
                            let message = tokio::select! {
                                () = cancel.cancelled() => return,
                                message = stream.message() => message,
                            };
                            match message {
                                Ok(Some(resp)) => {
                                    let keys: Vec<(String, Option<String>)> = resp
                                        .events()
                                        .iter()
                                        .filter_map(|e| {
                                            let kv = e.kv()?;
                                            let key =
                                                String::from_utf8_lossy(kv.key()).into_owned();
                                            let value = (e.event_type()
                                                == etcd_client::EventType::Put)
                                                .then(|| {
                                                    String::from_utf8_lossy(kv.value()).into_owned()
                                                });
                                            Some((key, value))
                                        })
                                        .collect();
                                    if !keys.is_empty()
                                        && tx.send(WatchEvent::Changed(keys)).await.is_err()
                                    {
                                        return;
                                    }
                                }
                                Ok(None) => break,
                                Err(err) => {
                                    tracing::warn!(%prefix, error = %err, "etcd watch broke; opening it again");
                                    break;
                                }
                            }
                        }
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(%prefix, error = %err, "cannot open etcd watch; retrying")
                    }
                    Err(_) => tracing::warn!(%prefix, "opening etcd watch timed out; retrying"),
                }
                first = false;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(WATCH_MAX_BACKOFF);
            }
        });
        rx
    }
}
