//! Default locations of SPEC §3, from the XDG variables.
//!
//! The socket's default is computed by a pure function of the runtime directory and the
//! uid, so the fallback is unit-tested without touching the real `/tmp/tokenvault-$UID`.
//! Whether that directory can be trusted is decided by `serve`
//! (`server::runtime_dir`), never here.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(fallback)
        }
    }
}

pub fn default_vault() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share").join("tokenvault/vault.redb")
}

pub fn default_config() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("tokenvault/config.toml")
}

/// Where the fallback runtime directories live when `XDG_RUNTIME_DIR` is unset.
pub const FALLBACK_RUNTIME_BASE: &str = "/tmp";

/// The default socket: `$XDG_RUNTIME_DIR/tokenvault/tokenvault.sock`, else
/// `/tmp/tokenvault-$UID/tokenvault.sock`.
pub fn default_socket() -> PathBuf {
    socket_in(
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
        nix::unistd::getuid().as_raw(),
        Path::new(FALLBACK_RUNTIME_BASE),
    )
}

/// The default socket for a given `XDG_RUNTIME_DIR` value and uid. An empty or relative
/// `XDG_RUNTIME_DIR` is ignored, as the XDG base-directory spec asks: a relative one would
/// put the socket wherever the command happens to run.
pub fn socket_in(runtime_dir: Option<&OsStr>, uid: u32, fallback_base: &Path) -> PathBuf {
    match runtime_dir.map(Path::new) {
        Some(d) if d.is_absolute() => d.join("tokenvault/tokenvault.sock"),
        _ => fallback_base
            .join(format!("tokenvault-{uid}"))
            .join("tokenvault.sock"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_fallback_is_per_uid_under_tmp() {
        let tmp = Path::new("/tmp");
        let cases: [(Option<&str>, u32, &str); 5] = [
            (
                Some("/run/user/1000"),
                1000,
                "/run/user/1000/tokenvault/tokenvault.sock",
            ),
            (None, 1000, "/tmp/tokenvault-1000/tokenvault.sock"),
            (None, 0, "/tmp/tokenvault-0/tokenvault.sock"),
            (Some(""), 42, "/tmp/tokenvault-42/tokenvault.sock"),
            (
                Some("run/user/42"),
                42,
                "/tmp/tokenvault-42/tokenvault.sock",
            ),
        ];
        for (xdg, uid, want) in cases {
            assert_eq!(
                socket_in(xdg.map(OsStr::new), uid, tmp),
                PathBuf::from(want),
                "{xdg:?} {uid}"
            );
        }
        assert_eq!(
            socket_in(None, 7, Path::new("/var/tmp")),
            PathBuf::from("/var/tmp/tokenvault-7/tokenvault.sock")
        );
    }
}
