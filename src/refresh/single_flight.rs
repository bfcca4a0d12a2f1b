//! Single flight (SPEC §5.2): concurrent callers asking for the same key share one
//! execution and its result. The first caller runs the work; the others wait on a `watch`
//! channel. If the runner is cancelled (its caller went away), the waiters notice the
//! closed channel and one of them runs the work again, so nobody waits forever.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

#[derive(Debug)]
pub struct SingleFlight<T> {
    map: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
    started: AtomicU64,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            map: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
        }
    }
}

/// Removes the flight's entry when the runner finishes or is dropped.
struct Entry<'a, T> {
    flight: &'a SingleFlight<T>,
    key: &'a str,
}

impl<T> Drop for Entry<'_, T> {
    fn drop(&mut self) {
        self.flight
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.key);
    }
}

enum Role<T> {
    Runner(watch::Sender<Option<T>>),
    Waiter(watch::Receiver<Option<T>>),
}

impl<T: Clone + Send + Sync> SingleFlight<T> {
    /// Runs `work` for `key` unless a run is in flight, in which case waits for its result.
    pub async fn run<F, Fut>(&self, key: &str, work: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut work = Some(work);
        loop {
            let role = {
                let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
                match map.get(key) {
                    Some(rx) => Role::Waiter(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        map.insert(key.to_owned(), rx);
                        Role::Runner(tx)
                    }
                }
            };
            match role {
                Role::Waiter(mut rx) => {
                    if let Ok(v) = rx.wait_for(Option::is_some).await
                        && let Some(v) = v.clone()
                    {
                        return v;
                    }
                    // the runner was cancelled: try again, perhaps as the runner
                }
                Role::Runner(tx) => {
                    let entry = Entry { flight: self, key };
                    self.started.fetch_add(1, Ordering::Relaxed);
                    let Some(w) = work.take() else {
                        // unreachable: a caller becomes runner at most once, then returns
                        continue;
                    };
                    let v = w().await;
                    let _ = tx.send(Some(v.clone()));
                    drop(entry);
                    return v;
                }
            }
        }
    }

    /// How many runs have started (each one provider call sequence).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let f = Arc::new(SingleFlight::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..50 {
            let f = f.clone();
            let runs = runs.clone();
            handles.push(tokio::spawn(async move {
                f.run("k", || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    7
                })
                .await
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_runner_hands_over() {
        let f = Arc::new(SingleFlight::<u32>::default());
        let f2 = f.clone();
        let runner = tokio::spawn(async move {
            f2.run("k", || async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                1
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let f3 = f.clone();
        let waiter = tokio::spawn(async move { f3.run("k", || async { 2 }).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        runner.abort();
        assert_eq!(waiter.await.unwrap(), 2);
    }
}
