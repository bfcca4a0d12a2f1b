//! `tokenvault man [--dir DIR]` (hidden): man pages generated from the clap definitions
//! with `clap_mangen`, so they can never disagree with `--help`. `scripts/install` writes
//! them into `$PREFIX/share/man/man1`. Without `--dir`, prints `tokenvault.1` on stdout.

use super::args::Cli;
use crate::error::{Error, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

fn page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .date(env!("TOKENVAULT_BUILD_DATE"))
        .manual("tokenvault manual")
}

/// Writes the page of `cmd` and of each visible subcommand, depth first; returns how many.
fn write_all(cmd: clap::Command, dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        n += write_all(sub, dir)?;
    }
    page(cmd).generate_to(dir)?;
    Ok(n + 1)
}

pub fn run(dir: Option<&Path>) -> Result<i32> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // names the subcommands' pages tokenvault-get.1, tokenvault-backup-export.1, …
    cmd.build();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
            let n = write_all(cmd, dir).map_err(|e| {
                Error::io(format!("cannot write man pages to {}", dir.display()), e)
            })?;
            eprintln!("wrote {n} man pages to {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            page(cmd)
                .render(&mut out)
                .map_err(|e| Error::io("cannot render the man page", e))?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&out)
                .and_then(|_| stdout.flush())
                .map_err(|e| Error::io("cannot write to stdout", e))?;
        }
    }
    Ok(0)
}
