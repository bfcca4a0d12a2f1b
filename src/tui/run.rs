//! The event loop of the terminal UI: terminal set-up and restore (on exit, on Ctrl-C, on
//! SIGTERM/SIGHUP, on panic), keys and resizes from crossterm, live events from the link,
//! a one-second tick for countdowns, and the App's effects carried out through the link.
//!
//! It sleeps between those: nothing is drawn unless a key, an answer, an event, a resize
//! or the tick arrived (SPEC §10: no busy redraw). Answers that arrive together are drawn
//! once.
//!
//! Must not: decide what a key does (that is `app.rs`), or keep a secret longer than the
//! call it is read for (the `.p8` and identity files are read into a `Secret` and sent).

use super::app::{Action, App, Change, Effect, Tag};
use super::input::{self, Input};
use super::link::{Link, ProgressSink};
use super::view;
use crate::contract::Request;
use crate::error::{Error, Result};
use crate::secret::Secret;
use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How the screen looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Colours on; `NO_COLOR` (set and not empty, no-color.org) turns them off.
    pub color: bool,
}

impl Options {
    pub fn from_env() -> Options {
        Options {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Reads a small text file the user named at a prompt (a `.p8`, an age identity) into a
/// `Secret`. The message names the field, not the typed path.
fn read_text_file(path: &str, what: &'static str) -> Result<Secret> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::io(
            format!("cannot read the {what} file given at the prompt"),
            e,
        )
    })?;
    if meta.len() > 64 * 1024 {
        return Err(Error::invalid(
            what,
            "the file given at the prompt is larger than 64 KiB; is it the right file?",
        ));
    }
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
        Error::io(
            format!("cannot read the {what} file given at the prompt"),
            e,
        )
    })?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::invalid(what, "the file given at the prompt is not UTF-8 text"))?;
    Ok(Secret::new(text))
}

/// An absolute path for the engine (which may be a daemon with another working directory).
fn absolute(path: &str) -> Result<String> {
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .map_err(|e| Error::io("cannot resolve the backup path given at the prompt", e))
}

/// Carries out one effect and returns the answer for the App (`None` for `Quit`).
pub async fn perform(
    link: Arc<dyn Link>,
    fx: Effect,
    progress: Option<ProgressSink>,
) -> Option<Action> {
    let (tag, result) = match fx {
        Effect::Quit => return None,
        Effect::Call { tag, req } => (tag, link.call(req).await),
        Effect::AddAppleKey {
            tenant,
            team_id,
            key_id,
            p8_path,
        } => {
            let tag = Tag::Change(Change::AppleKey {
                tenant: tenant.clone(),
            });
            let result = match read_text_file(&p8_path, ".p8") {
                Ok(p8) => {
                    link.call(Request::AppleKeyAdd {
                        tenant,
                        team_id,
                        key_id,
                        p8,
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            (tag, result)
        }
        Effect::Export {
            path,
            tenant,
            recipients,
        } => {
            let result = match absolute(&path) {
                Ok(path) => {
                    let req = Request::BackupExport {
                        path,
                        tenant,
                        recipients,
                        passphrase: None,
                        include_audit: false,
                    };
                    match progress {
                        Some(p) => link.call_with_progress(req, p).await,
                        None => link.call(req).await,
                    }
                }
                Err(e) => Err(e),
            };
            (Tag::Backup, result)
        }
        Effect::Verify {
            path,
            identity_path,
        } => {
            let result = match (
                absolute(&path),
                read_text_file(&identity_path, "age identity"),
            ) {
                (Ok(path), Ok(identity)) => {
                    link.call(Request::BackupVerify {
                        path,
                        identity: Some(identity),
                        passphrase: None,
                    })
                    .await
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            (Tag::Backup, result)
        }
    };
    Some(Action::Answer {
        tag,
        result: result.map_err(|e| format!("error: {e}")),
    })
}

/// Runs `effects` and every effect their answers cause, one at a time, until none is left
/// (a test or benchmark driver: no terminal, no events). `Quit` is ignored.
pub async fn settle(app: &mut App, link: &Arc<dyn Link>, effects: Vec<Effect>) {
    let mut queue: std::collections::VecDeque<Effect> = effects.into();
    while let Some(fx) = queue.pop_front() {
        if let Some(action) = perform(link.clone(), fx, None).await {
            queue.extend(app.update(action));
        }
    }
}

/// Starts each effect in its own task; answers come back on `tx`.
fn spawn(link: &Arc<dyn Link>, fx: Vec<Effect>, tx: &mpsc::UnboundedSender<Action>) -> bool {
    let mut quit = false;
    for fx in fx {
        if matches!(fx, Effect::Quit) {
            quit = true;
            continue;
        }
        let progress: Option<ProgressSink> = matches!(fx, Effect::Export { .. }).then(|| {
            let tx = tx.clone();
            Arc::new(move |done, total| {
                let _ = tx.send(Action::Progress { done, total });
            }) as ProgressSink
        });
        let link = link.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Some(a) = perform(link, fx, progress).await {
                let _ = tx.send(a);
            }
        });
    }
    quit
}

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!(
        "cannot draw on the terminal ({e}); the terminal was restored"
    ))
}

/// The loop, on any ratatui backend: draws `app`, feeds it `inputs`, the link's events and
/// the tick, carries out its effects, until it quits or `shutdown` completes.
pub async fn run_loop<B, I, S>(
    terminal: &mut Terminal<B>,
    link: Arc<dyn Link>,
    mut inputs: I,
    opts: Options,
    shutdown: S,
) -> Result<()>
where
    B: Backend,
    B::Error: std::fmt::Display,
    I: Stream<Item = Input> + Unpin,
    S: std::future::Future<Output = ()>,
{
    let size = terminal.size().map_err(draw_err)?;
    let mut app = App::new(link.info(), now(), size.width, size.height);
    app.color = opts.color;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let first = app.start();
    spawn(&link, first, &tx);
    let mut events = match link.watch().await {
        Ok(ev) => Some(ev),
        Err(e) => {
            app.update(Action::WatchLost(e.to_string()));
            None
        }
    };
    // ticks on whole seconds, so the clock and the countdowns change together
    let ms = chrono::Utc::now().timestamp_subsec_millis();
    let start = tokio::time::Instant::now() + Duration::from_millis(u64::from(1000 - ms.min(999)));
    let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    terminal.draw(|f| view::draw(f, &app)).map_err(draw_err)?;
    loop {
        let mut fx: Vec<Effect>;
        tokio::select! {
            _ = &mut shutdown => break,
            input = inputs.next() => match input {
                Some(Input::Key(k)) => fx = app.update(Action::Key(k)),
                Some(Input::Resize { width, height }) => {
                    fx = app.update(Action::Resize { width, height });
                    terminal.autoresize().map_err(draw_err)?;
                }
                // the terminal went away: nothing more can be typed
                None => break,
            },
            Some(a) = rx.recv() => fx = app.update(a),
            ev = next_event(&mut events) => match ev {
                Some(Ok(ev)) => fx = app.update(Action::Event(ev)),
                Some(Err(e)) => {
                    events = None;
                    fx = app.update(Action::WatchLost(e.to_string()));
                }
                None => {
                    events = None;
                    fx = app.update(Action::WatchLost("the daemon stopped sending events".into()));
                }
            },
            _ = tick.tick() => fx = app.update(Action::Tick(now())),
        }
        // take whatever else already arrived before drawing once
        while let Ok(a) = rx.try_recv() {
            fx.extend(app.update(a));
        }
        if spawn(&link, fx, &tx) || app.quit {
            break;
        }
        terminal.draw(|f| view::draw(f, &app)).map_err(draw_err)?;
    }
    Ok(())
}

async fn next_event(
    events: &mut Option<super::link::Events>,
) -> Option<Result<crate::contract::Event>> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Puts the terminal back (raw mode off, main screen, cursor shown). Safe to call twice.
fn restore() {
    use crossterm::ExecutableCommand;
    let _ = crossterm::terminal::disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = out.execute(crossterm::terminal::LeaveAlternateScreen);
    let _ = out.execute(crossterm::cursor::Show);
}

/// The TUI owns the terminal (raw mode, alternate screen): a panic must restore it.
static ACTIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Chains a hook before the current one (main's, which prints where it happened): the
/// terminal is restored first, so that message is readable. Installed once per process.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ACTIVE.swap(false, std::sync::atomic::Ordering::SeqCst) {
                restore();
            }
            previous(info);
        }));
    });
}

/// Restores the terminal when dropped: on return, on error and while unwinding.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        if ACTIVE.swap(false, std::sync::atomic::Ordering::SeqCst) {
            restore();
        }
    }
}

/// Runs the TUI on this process's terminal until `q`, Ctrl-C, SIGTERM, SIGINT or SIGHUP.
/// The terminal is restored on every way out, panics included.
pub async fn run_terminal(link: Arc<dyn Link>, opts: Options) -> Result<()> {
    use crossterm::ExecutableCommand;
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Error::invalid(
            "terminal",
            "`tokenvault tui` needs a terminal on stdin and stdout; for scripts use `tokenvault watch` or `list --json`",
        ));
    }
    install_panic_hook();
    ACTIVE.store(true, std::sync::atomic::Ordering::SeqCst);
    let guard = Restore;
    crossterm::terminal::enable_raw_mode()
        .map_err(|e| Error::io("cannot switch the terminal to raw mode", e))?;
    std::io::stdout()
        .execute(crossterm::terminal::EnterAlternateScreen)
        .map_err(|e| Error::io("cannot switch to the terminal's alternate screen", e))?;
    let mut terminal = Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))
        .map_err(|e| Error::io("cannot set up the terminal", e))?;
    let inputs = crossterm::event::EventStream::new()
        .filter_map(|ev| std::future::ready(ev.ok().as_ref().and_then(input::input)));
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
            _ = hup.recv() => {},
        }
    };
    let result = run_loop(&mut terminal, link, Box::pin(inputs), opts, shutdown).await;
    drop(terminal);
    drop(guard);
    result
}
