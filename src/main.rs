//! The `tokenvault` binary: parses arguments, sets up logging and the runtime, runs the
//! command, and maps errors to the exit codes of SPEC §3. Everything else is in the library.

use clap::Parser;
use std::process::ExitCode;
use tokenvault::cli::{Cli, args::LogFormat};

fn init_logging(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
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
        eprintln!("tokenvault: internal error at {at}; please report it (no data was printed)");
    }));
    let cli = Cli::parse();
    init_logging(cli.global.log_format, cli.global.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokenvault: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(tokenvault::cli::run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("tokenvault: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
