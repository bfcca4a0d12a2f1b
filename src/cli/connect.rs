//! `connect` on the command line: renders the flow's steps (`client::connect`) as lines on
//! stderr, opens a browser when asked and one can show, and reads the pasted redirect
//! from stdin for `--no-listen`. The flow itself (listener, polling, checks, the engine
//! requests) is `client::connect`'s.

use super::args::Flow;
use super::output::note;
use crate::client::connect::{ConnectStep, ConnectUi};
use crate::error::{Error, Result};
use crate::secret::Secret;

pub use crate::client::connect::{ConnectOptions, HEADLESS_PORT};

/// Longest pasted line read (a redirect URL with its code is far shorter).
const MAX_PASTE: u64 = 16 * 1024;

impl From<Flow> for crate::client::connect::Flow {
    fn from(f: Flow) -> Self {
        match f {
            Flow::Code => Self::Code,
            Flow::Device => Self::Device,
            Flow::ClientCredentials => Self::ClientCredentials,
        }
    }
}

/// The terminal's side of a flow: `open` is `--open`.
#[derive(Debug)]
pub struct Terminal {
    pub open: bool,
}

impl ConnectUi for Terminal {
    fn step(&mut self, step: ConnectStep<'_>) {
        match step {
            ConnectStep::PasteRedirect {
                connection,
                url,
                redirect_uri,
            } => {
                note(format_args!(
                    "Open this URL in a browser, on any machine, to authorise {connection}:"
                ));
                note(format_args!("{url}"));
                note(format_args!(
                    "After you approve, the browser is sent to {redirect_uri}?code=… — nothing listens there, so that page does not load. Copy the whole address from the browser's address bar, paste it here and press Enter:"
                ));
            }
            ConnectStep::OpenUrl {
                connection, url, ..
            } => {
                note(format_args!(
                    "Open this URL in a browser to authorise {connection}:"
                ));
                note(format_args!("{url}"));
                self.maybe_open(url);
            }
            ConnectStep::Waiting {
                redirect_uri: Some(redirect_uri),
            } => {
                note(format_args!("Waiting for the redirect to {redirect_uri} …"));
            }
            ConnectStep::Waiting { redirect_uri: None } => {}
            ConnectStep::UserCode {
                connection,
                verification_uri,
                user_code,
                complete,
            } => {
                note(format_args!(
                    "To authorise {connection}, visit {verification_uri} and enter the code {user_code}"
                ));
                if let Some(c) = complete {
                    note(format_args!("(or open {c})"));
                }
            }
            ConnectStep::Done { .. } => {}
        }
    }

    fn paste(&mut self) -> impl std::future::Future<Output = Result<Secret>> + Send {
        read_pasted_line()
    }
}

impl Terminal {
    /// Opens `url` after the lines naming it are printed (a browser is worth trying only
    /// with a display).
    fn maybe_open(&self, url: &str) {
        if self.open {
            open_browser(url);
        }
    }
}

/// One line from stdin, read on a thread of its own so the flow's timeout can give up on
/// it (a blocked read cannot be cancelled; the thread ends with the process). End of
/// input gives what was read, possibly nothing.
async fn read_pasted_line() -> Result<Secret> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::{BufRead, Read};
        let mut line = zeroize::Zeroizing::new(String::new());
        let r = std::io::stdin()
            .lock()
            .take(MAX_PASTE)
            .read_line(&mut line)
            .map(|_| Secret::new(line.as_str()));
        let _ = tx.send(r);
    });
    match rx.await {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(e)) => Err(Error::io("cannot read the pasted URL from stdin", e)),
        Err(_) => Err(Error::Internal("the stdin reader went away".into())),
    }
}

/// A browser is worth trying only with a display.
fn open_browser(url: &str) {
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if has_display || cfg!(target_os = "macos") {
        let _ = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}
