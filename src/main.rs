//! The `tokenvault` binary: parses arguments, sets up logging and the runtime, runs the
//! command, and maps errors to the exit codes of SPEC §3. Everything else is in the library.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use tokenvault::cli::{
    Cli,
    args::{Command, LogFormat},
};

/// The log filter of `-v` counts (`TOKENVAULT_LOG` overrides it). The daemon's default
/// shows its own informational lines (the start-up line, refresh failures); per-request
/// lines are debug (`-vv`); other crates (hyper, reqwest, rustls, h2 …) stay at warnings
/// until `-vvv`, which is for debugging them.
fn log_filter(verbose: u8, serve: bool) -> &'static str {
    match (verbose, serve) {
        (0, false) => "warn",
        (0, true) | (1, _) => "warn,tokenvault=info",
        (2, _) => "warn,tokenvault=debug",
        (3, _) => "debug",
        _ => "trace",
    }
}

fn init_logging(format: LogFormat, verbose: u8, serve: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter(verbose, serve)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // source paths mean nothing to an operator; targets only once other crates log
        .with_file(false)
        .with_line_number(false)
        .with_target(verbose >= 3);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    // A panic message could quote data; print only where it happened.
    std::panic::set_hook(Box::new(|info| {
        // A panic the vault's guard catches (redb on damaged data) becomes the
        // damaged-vault error and exit 1; printing it here would only confuse.
        if tokenvault::vault::panic_is_caught() {
            return;
        }
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // not eprintln!: a closed stderr must not panic inside the panic hook
        let _ = writeln!(
            std::io::stderr(),
            "tokenvault: internal error at {at}; please report it (no data was printed)"
        );
    }));
    let cli = Cli::parse();
    let serve = matches!(cli.command, Command::Serve { .. });
    // The TUI owns the terminal: a log line on stderr would draw over its screen. So
    // `tui`, and `demo` with its TUI (whose daemon runs in this process), log nothing;
    // what the daemon does shows in the TUI as events.
    let owns_terminal = matches!(
        cli.command,
        Command::Tui
            | Command::Demo {
                headless: false,
                ..
            }
    );
    if !owns_terminal {
        init_logging(cli.global.log_format, cli.global.verbose, serve);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "tokenvault: cannot start the async runtime: {e}"
            );
            return ExitCode::from(1);
        }
    };
    // decided before the command runs: a wrong passphrase is explained by where it came from
    let pass_source = tokenvault::cli::passphrase::source(cli.global.passphrase_file.as_deref());
    match rt.block_on(tokenvault::cli::run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            let e = tokenvault::cli::passphrase::explain(e, &pass_source);
            let _ = writeln!(std::io::stderr(), "tokenvault: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
