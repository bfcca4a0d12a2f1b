//! What this binary is: its version with the commit and build date (set by build.rs), for
//! `--version`, `status`, the daemon's start-up line and `tokenvault_build_info`. Here,
//! not in the CLI, because the daemon, the engine and the metrics report it too.

/// `--version`: the version with the commit and build date of this binary (see build.rs).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TOKENVAULT_COMMIT"),
    ", built ",
    env!("TOKENVAULT_BUILD_DATE"),
    ")"
);

/// The commit this binary was built from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("TOKENVAULT_COMMIT");
