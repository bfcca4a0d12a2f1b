//! Single flight (SPEC §5.2): concurrent callers asking for the same key share one
//! execution and its result. The first caller runs the work; the others wait on a `watch`
//! channel. If the runner is cancelled (its future dropped), the waiters notice the
//! closed channel and one of them runs the work again, so nobody waits forever.
//!
//! A waiter may leave early (its `cancel` future resolved: its caller went away); the
//! flight counts who still waits (`waiters`), so the runner's work can stop once its own
//! caller is gone and nobody else wants the result (issue 14).

use crate::sync::LockExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Debug)]
struct Flight<T> {
    rx: watch::Receiver<Option<T>>,
    waiters: Arc<AtomicUsize>,
}

#[derive(Debug)]
pub struct SingleFlight<T> {
    map: Mutex<HashMap<String, Flight<T>>>,
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
        self.flight.map.lock_or_recover().remove(self.key);
    }
}

/// Counts one waiter of a flight while it waits, however it stops waiting.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn join(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Waiting(count)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Role<T> {
    Runner(watch::Sender<Option<T>>),
    Waiter(watch::Receiver<Option<T>>, Arc<AtomicUsize>),
}

impl<T: Clone + Send + Sync> SingleFlight<T> {
    /// Runs `work` for `key` unless a run is in flight, in which case waits for its result.
    /// A waiter gives up when `cancel` resolves (`None`); the runner ignores `cancel` (its
    /// work decides when to stop, so that nothing half-done is abandoned).
    pub async fn run<F, Fut, C>(&self, key: &str, cancel: C, work: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
        C: Future<Output = ()>,
    {
        let mut work = Some(work);
        tokio::pin!(cancel);
        loop {
            let role = {
                let mut map = self.map.lock_or_recover();
                match map.get(key) {
                    Some(f) => Role::Waiter(f.rx.clone(), f.waiters.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        map.insert(
                            key.to_owned(),
                            Flight {
                                rx,
                                waiters: Arc::default(),
                            },
                        );
                        Role::Runner(tx)
                    }
                }
            };
            match role {
                Role::Waiter(mut rx, count) => {
                    let _waiting = Waiting::join(count);
                    tokio::select! {
                        r = rx.wait_for(Option::is_some) => {
                            if let Ok(v) = r
                                && let Some(v) = v.clone()
                            {
                                return Some(v);
                            }
                            // the runner was cancelled: try again, perhaps as the runner
                        }
                        _ = &mut cancel => return None,
                    }
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
                    return Some(v);
                }
            }
        }
    }

    /// How many callers wait for the flight of `key` now (its runner not counted).
    pub fn waiters(&self, key: &str) -> usize {
        self.map
            .lock_or_recover()
            .get(key)
            .map_or(0, |f| f.waiters.load(Ordering::Acquire))
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
    use std::future::pending;
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
                f.run("k", pending(), || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    7
                })
                .await
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap(), Some(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_runner_hands_over() {
        let f = Arc::new(SingleFlight::<u32>::default());
        let f2 = f.clone();
        let runner = tokio::spawn(async move {
            f2.run("k", pending(), || async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                1
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let f3 = f.clone();
        let waiter = tokio::spawn(async move { f3.run("k", pending(), || async { 2 }).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        runner.abort();
        assert_eq!(waiter.await.unwrap(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_counted_and_may_leave() {
        let f = Arc::new(SingleFlight::<u32>::default());
        let (leave_tx, leave_rx) = tokio::sync::oneshot::channel::<()>();
        let f2 = f.clone();
        let runner = tokio::spawn(async move {
            f2.run("k", pending(), || async {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                1
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(f.waiters("k"), 0);
        let f3 = f.clone();
        let waiter = tokio::spawn(async move {
            f3.run(
                "k",
                async {
                    let _ = leave_rx.await;
                },
                || async { 2 },
            )
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(f.waiters("k"), 1);
        leave_tx.send(()).unwrap();
        assert_eq!(
            waiter.await.unwrap(),
            None,
            "the waiter left without a result"
        );
        assert_eq!(f.waiters("k"), 0);
        assert_eq!(runner.await.unwrap(), Some(1));
        assert_eq!(f.waiters("other"), 0);
    }
}
