//! The CLI's way of showing progress (`contract::progress`): an indicatif bar on stderr,
//! only when stderr is a terminal and only for more than `PROGRESS_THRESHOLD` records, so
//! small vaults and scripts see nothing. Through a daemon no progress arrives.

use crate::contract::progress::{ProgressEvent, ProgressSink};
use crate::sync::LockExt;
use std::sync::Mutex;

/// Progress bars appear only on a terminal and for at least this many records.
pub const PROGRESS_THRESHOLD: u64 = 5_000;

/// Whether a progress bar may draw: stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// A sink drawing a bar on stderr, or `None` when stderr is not a terminal.
pub fn terminal_sink() -> Option<ProgressSink> {
    if !stderr_is_terminal() {
        return None;
    }
    let bar: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
    Some(ProgressSink::new(move |ev| {
        let mut bar = bar.lock_or_recover();
        match ev {
            ProgressEvent::Start { what, total } => {
                if let Some(old) = bar.take() {
                    old.finish_and_clear();
                }
                *bar = (total >= PROGRESS_THRESHOLD).then(|| new_bar(&what, total));
            }
            ProgressEvent::Advance { done } => {
                if let Some(b) = bar.as_ref() {
                    b.set_position(done);
                }
            }
            ProgressEvent::Finish => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
            }
        }
    }))
}

fn new_bar(what: &str, total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {pos}/{len} records ({per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}
