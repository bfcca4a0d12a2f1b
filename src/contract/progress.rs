//! Progress of a long operation (a backup export, verify or restore) as plain events, so
//! the caller decides how to show it: the CLI draws an indicatif bar on a terminal, the
//! TUI a gauge, the daemon nothing (it passes no sink). Nothing here draws or prints.
//!
//! Over the socket no progress is sent: a daemon-side operation reports to no sink.

use std::sync::Arc;

/// One step of a long operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The operation begins `total` units of work (records), named `what`
    /// (`"export"`, `"verify"`, `"restore"`).
    Start { what: String, total: u64 },
    /// `done` units are finished so far (a running count, not an increment).
    Advance { done: u64 },
    /// The operation ended (finished or failed).
    Finish,
}

/// Where progress goes: a callback run on the operation's own thread for every event, so
/// it must be quick (draw, or send on a channel). Cheap to clone.
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(ProgressEvent) + Send + Sync>);

impl ProgressSink {
    pub fn new(f: impl Fn(ProgressEvent) + Send + Sync + 'static) -> ProgressSink {
        ProgressSink(Arc::new(f))
    }

    pub fn report(&self, event: ProgressEvent) {
        (self.0)(event)
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::LockExt;
    use std::sync::Mutex;

    #[test]
    fn a_sink_hands_each_event_to_its_callback() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink = ProgressSink::new(move |e| s.lock_or_recover().push(e));
        let copy = sink.clone();
        sink.report(ProgressEvent::Start {
            what: "export".into(),
            total: 2,
        });
        copy.report(ProgressEvent::Advance { done: 1 });
        copy.report(ProgressEvent::Finish);
        assert_eq!(format!("{sink:?}"), "ProgressSink");
        let seen = seen.lock_or_recover().clone();
        assert_eq!(
            seen,
            vec![
                ProgressEvent::Start {
                    what: "export".into(),
                    total: 2
                },
                ProgressEvent::Advance { done: 1 },
                ProgressEvent::Finish,
            ]
        );
    }
}
