//! Where `serve` puts its socket, and whether it can trust the place (SPEC §6).
//!
//! Owns: the checks on the socket's directory and its parents, creating that directory,
//! the lock file, and the stale-socket rule. Everything is inspected with `lstat` or
//! opened with `O_NOFOLLOW`; a link is never followed at the last component.
//!
//! Two policies, after tmux (`/tmp/tmux-UID`) and OpenSSH's `safe_path`:
//!
//! - **Private**: the default runtime directory (`$XDG_RUNTIME_DIR/tokenvault`, or
//!   `/tmp/tokenvault-$UID` without it), and any directory `serve` creates itself. It must be
//!   a real directory (not a link) owned by the daemon's euid with no read or write bit for
//!   group or others; anything else is refused, because whoever owns or can write it can
//!   put a socket of their own where clients look for ours. Search (x) bits are set to what
//!   `--socket-mode` needs (0700, 0710 or 0711).
//! - **Shared**: an existing directory named by `--socket` (a directory the operator shares
//!   on purpose, e.g. with `--socket-group`). It must be a real directory owned by the
//!   daemon's euid or root, and not writable by group or others unless it has the sticky
//!   bit (as `/tmp` has: others cannot remove or rename our files there). It is left as the
//!   operator made it, except that a private-looking directory of ours gets the search bits
//!   a widened socket needs, as `serve` always did.
//!
//! Every parent of the socket directory (after resolving links in them) must pass the
//! Shared rule too: a writable parent would let someone rename the directory away and put
//! their own in its place.
//!
//! Must not: follow a link at the socket directory, lock file or socket path, or remove
//! anything but a socket the daemon's euid owns.

use crate::error::{Error, Result};
use std::fs::{File, Metadata};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// How much a socket directory must prove (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Private,
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Symlink,
    Other,
}

/// What `lstat` says about a path, as far as trust goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub kind: Kind,
    pub uid: u32,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
}

impl Facts {
    pub fn of(m: &Metadata) -> Self {
        let t = m.file_type();
        let kind = if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        };
        Facts {
            kind,
            uid: m.uid(),
            mode: m.mode() & 0o7777,
        }
    }
}

const STICKY: u32 = 0o1000;
const FIX: &str = "or set XDG_RUNTIME_DIR or --socket to a directory of your own";

/// The pure rule: may a socket live in a directory with these facts? `Err` is the reason,
/// ready for a message (it says what to do).
pub fn judge(f: &Facts, policy: Policy, euid: u32) -> std::result::Result<(), String> {
    match f.kind {
        Kind::Symlink => {
            return Err(format!(
                "it is a symbolic link, and the daemon does not follow links to its socket directory: remove it, {FIX}"
            ));
        }
        Kind::Other => return Err(format!("it is not a directory: remove it, {FIX}")),
        Kind::Dir => {}
    }
    match policy {
        Policy::Private => {
            if f.uid != euid {
                return Err(format!(
                    "it belongs to uid {}, not to this daemon's uid {euid} (someone may have created it to catch the socket's clients): remove it, {FIX}",
                    f.uid
                ));
            }
            if f.mode & 0o066 != 0 {
                return Err(format!(
                    "its mode is {:04o}, so group or others may read or write it: `chmod 700` it (or remove it), {FIX}",
                    f.mode
                ));
            }
        }
        Policy::Shared => {
            if f.uid != euid && f.uid != 0 {
                return Err(format!(
                    "it belongs to uid {}, neither this daemon's uid {euid} nor root, so its owner could replace the socket: use a directory owned by you or root",
                    f.uid
                ));
            }
            if f.mode & 0o022 != 0 && f.mode & STICKY == 0 {
                return Err(format!(
                    "its mode is {:04o}: group or others may write it without the sticky bit, so they could replace the socket: `chmod go-w` it (or `chmod +t` for a shared drop directory), or use another directory",
                    f.mode
                ));
            }
        }
    }
    Ok(())
}

fn unsafe_dir(path: &Path, reason: String) -> Error {
    Error::Unsafe {
        what: "socket directory",
        path: path.to_owned(),
        reason,
    }
}

/// Every parent of `dir`, links in them resolved, must pass the Shared rule.
fn check_parents(dir: &Path, euid: u32) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let real = std::fs::canonicalize(parent)
        .map_err(|e| Error::io(format!("cannot resolve {}", parent.display()), e))?;
    for a in real.ancestors() {
        let m = std::fs::symlink_metadata(a)
            .map_err(|e| Error::io(format!("cannot inspect {}", a.display()), e))?;
        judge(&Facts::of(&m), Policy::Shared, euid).map_err(|reason| Error::Unsafe {
            what: "parent of the socket directory",
            path: a.to_owned(),
            reason,
        })?;
    }
    Ok(())
}

/// Opens `dir` itself, never a link's target: the checks and the chmod below act on the
/// open descriptor, so the directory cannot be swapped between them.
fn open_dir_nofollow(dir: &Path) -> Result<File> {
    use nix::fcntl::OFlag;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => unsafe_dir(
                dir,
                format!(
                    "it is a symbolic link, and the daemon does not follow links to its socket directory: remove it, {FIX}"
                ),
            ),
            Some(nix::libc::ENOTDIR) => {
                unsafe_dir(dir, format!("it is not a directory: remove it, {FIX}"))
            }
            _ => Error::io(format!("cannot open {}", dir.display()), e),
        })
}

/// Makes `dir` ready for the socket, or refuses it (exit 1, the reason and the fix in the
/// message). `private` is true for the default runtime directory; a directory that does
/// not exist is created 0700 (its missing parents too) and is then private as well.
/// `dir_mode` is what the directory should be (0700, plus search bits for a widened
/// socket); `gid` the `--socket-group`. On refusal nothing has been changed.
pub fn prepare(
    dir: &Path,
    private: bool,
    euid: u32,
    dir_mode: u32,
    gid: Option<u32>,
) -> Result<()> {
    let mut policy = if private {
        Policy::Private
    } else {
        Policy::Shared
    };
    match std::fs::symlink_metadata(dir) {
        Ok(_) => check_parents(dir, euid)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(p) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(p)
                    .map_err(|e| Error::io(format!("cannot create {}", p.display()), e))?;
            }
            check_parents(dir, euid)?;
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                // Someone made it between our lstat and mkdir: the checks below judge
                // what is there now, as strictly as a directory we made ourselves.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("cannot create {}", dir.display()), e)),
            }
            policy = Policy::Private;
        }
        Err(e) => return Err(Error::io(format!("cannot inspect {}", dir.display()), e)),
    }
    // lstat names a link or a file for what it is; the open below (O_NOFOLLOW) and the
    // same-inode check make sure the directory judged is the one then changed.
    let before = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("cannot inspect {}", dir.display()), e))?;
    judge(&Facts::of(&before), policy, euid).map_err(|r| unsafe_dir(dir, r))?;
    let f = open_dir_nofollow(dir)?;
    let m = f
        .metadata()
        .map_err(|e| Error::io(format!("cannot inspect {}", dir.display()), e))?;
    if (m.dev(), m.ino()) != (before.dev(), before.ino()) {
        return Err(unsafe_dir(
            dir,
            "it was replaced while the daemon checked it: find out what else uses this path, or choose another --socket".into(),
        ));
    }
    let facts = Facts::of(&m);
    judge(&facts, policy, euid).map_err(|r| unsafe_dir(dir, r))?;
    let ours_and_closed = facts.uid == euid && facts.mode & 0o077 & !0o011 == 0;
    let manage = policy == Policy::Private || (ours_and_closed && dir_mode != 0o700);
    if manage {
        if facts.mode != dir_mode {
            f.set_permissions(std::fs::Permissions::from_mode(dir_mode))
                .map_err(|e| Error::io(format!("cannot chmod {}", dir.display()), e))?;
        }
        if let Some(g) = gid {
            std::os::unix::fs::fchown(&f, None, Some(g))
                .map_err(|e| Error::io(format!("cannot give {} to group {g}", dir.display()), e))?;
        }
    } else if facts.mode & dir_mode & 0o011 != dir_mode & 0o011 {
        tracing::warn!(dir = %dir.display(), "the socket is widened but its directory does not let group/others search it; they cannot reach the socket");
    }
    Ok(())
}

fn unsafe_lock(path: &Path, reason: &str) -> Error {
    Error::Unsafe {
        what: "lock file",
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Opens (creating it 0600 if absent) the daemon's lock file without following a link: a
/// link, anything but a regular file, a file of another uid or one with other hard links
/// is refused, and the file is never truncated or written.
pub fn open_lock_file(path: &Path, euid: u32) -> Result<File> {
    use nix::fcntl::OFlag;
    let nofollow = (OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).bits();
    // Twice at most: a file appearing between lstat and O_EXCL is judged on the next turn.
    for _ in 0..2 {
        let before = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nofollow)
                    .open(path)
                {
                    Ok(f) => return Ok(f),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(Error::io(
                            format!("cannot create lock file {}", path.display()),
                            e,
                        ));
                    }
                }
            }
            Err(e) => return Err(Error::io(format!("cannot inspect {}", path.display()), e)),
        };
        if before.file_type().is_symlink() {
            return Err(unsafe_lock(
                path,
                "it is a symbolic link (the daemon would create or lock whatever it points to): remove it",
            ));
        }
        if !before.file_type().is_file() {
            return Err(unsafe_lock(path, "it is not a regular file: remove it"));
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nofollow)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(nix::libc::ELOOP) => unsafe_lock(
                    path,
                    "it is a symbolic link (the daemon would create or lock whatever it points to): remove it",
                ),
                _ => Error::io(format!("cannot open lock file {}", path.display()), e),
            })?;
        let m = f
            .metadata()
            .map_err(|e| Error::io(format!("cannot inspect {}", path.display()), e))?;
        if m.dev() != before.dev() || m.ino() != before.ino() || !m.file_type().is_file() {
            return Err(unsafe_lock(
                path,
                "it was replaced while the daemon opened it: remove it and start again",
            ));
        }
        if m.uid() != euid {
            return Err(unsafe_lock(
                path,
                &format!(
                    "it belongs to uid {}, not to this daemon: remove it",
                    m.uid()
                ),
            ));
        }
        if m.nlink() != 1 {
            return Err(unsafe_lock(
                path,
                "it has other hard links (it may be another file in disguise): remove it",
            ));
        }
        return Ok(f);
    }
    Err(unsafe_lock(
        path,
        "it keeps appearing and disappearing: find out what else uses this path",
    ))
}

/// Removes a socket file left by a daemon that died (the caller holds the lock, so no
/// live daemon owns it). Only a socket owned by `euid` is removed; a socket of another
/// uid, or any other kind of file (a link included), is refused and left alone.
pub fn remove_stale_socket(path: &Path, euid: u32) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && m.uid() == euid => {
            tracing::info!(socket = %path.display(), "replacing a stale socket from an earlier daemon");
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("cannot remove stale socket {}", path.display()), e))
        }
        Ok(m) if m.file_type().is_socket() => Err(Error::Unsafe {
            what: "socket",
            path: path.to_owned(),
            reason: format!(
                "a socket of uid {} is already there (another user's daemon, or a decoy); it was left alone: remove it, or choose another --socket",
                m.uid()
            ),
        }),
        Ok(_) => Err(Error::invalid(
            "--socket",
            format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot inspect {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(uid: u32, mode: u32) -> Facts {
        Facts {
            kind: Kind::Dir,
            uid,
            mode,
        }
    }

    #[test]
    fn private_dirs_must_be_ours_and_closed() {
        let me = 1000;
        let ok = [dir(me, 0o700), dir(me, 0o710), dir(me, 0o711)];
        for f in ok {
            assert_eq!(judge(&f, Policy::Private, me), Ok(()), "{f:?}");
        }
        let bad = [
            (dir(65534, 0o700), "uid 65534"),
            (dir(0, 0o700), "uid 0"),
            (dir(me, 0o755), "0755"),
            (dir(me, 0o777), "0777"),
            (dir(me, 0o1777), "1777"),
            (dir(me, 0o740), "0740"),
            (dir(me, 0o702), "0702"),
            (
                Facts {
                    kind: Kind::Symlink,
                    uid: me,
                    mode: 0o777,
                },
                "symbolic link",
            ),
            (
                Facts {
                    kind: Kind::Other,
                    uid: me,
                    mode: 0o600,
                },
                "not a directory",
            ),
        ];
        for (f, says) in bad {
            let e = judge(&f, Policy::Private, me).unwrap_err();
            assert!(e.contains(says), "{f:?}: {e}");
            assert!(
                e.contains("remove") || e.contains("chmod"),
                "no fix in: {e}"
            );
        }
    }

    #[test]
    fn shared_dirs_must_be_ours_or_roots_and_not_writable_without_sticky() {
        let me = 1000;
        for f in [
            dir(me, 0o700),
            dir(me, 0o755),
            dir(0, 0o755),
            dir(0, 0o1777),
            dir(me, 0o1770),
            dir(0, 0o750),
        ] {
            assert_eq!(judge(&f, Policy::Shared, me), Ok(()), "{f:?}");
        }
        for f in [
            dir(65534, 0o755),
            dir(65534, 0o1777),
            dir(me, 0o777),
            dir(0, 0o775),
            dir(me, 0o722),
        ] {
            assert!(judge(&f, Policy::Shared, me).is_err(), "{f:?}");
        }
        // root's daemon: only root's own directories count as "ours or root's"
        assert!(judge(&dir(0, 0o700), Policy::Private, 0).is_ok());
        assert!(judge(&dir(1000, 0o700), Policy::Shared, 0).is_err());
    }

    #[test]
    fn prepare_refuses_and_leaves_alone_what_it_cannot_trust() {
        let t = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        // a fresh directory is created 0700
        let fresh = t.path().join("a/b/run");
        prepare(&fresh, false, me, 0o700, None).unwrap();
        let m = std::fs::symlink_metadata(&fresh).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700);
        // widened: search bits for the group, nothing more
        prepare(&fresh, true, me, 0o710, None).unwrap();
        assert_eq!(
            std::fs::symlink_metadata(&fresh).unwrap().mode() & 0o7777,
            0o710
        );
        // a 0755 default directory is refused and not changed
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare(&open, true, me, 0o700, None).unwrap_err();
        assert_eq!(e.exit_code(), 1, "{e}");
        assert!(e.to_string().contains("0755"), "{e}");
        assert_eq!(
            std::fs::symlink_metadata(&open).unwrap().mode() & 0o7777,
            0o755
        );
        // ... but is fine as an operator's shared directory, and left as it is
        prepare(&open, false, me, 0o711, None).unwrap();
        assert_eq!(
            std::fs::symlink_metadata(&open).unwrap().mode() & 0o7777,
            0o755
        );
        // a link to a good directory is still refused, as either policy
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        for private in [true, false] {
            let e = prepare(&link, private, me, 0o700, None).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        // a directory under a world-writable parent without the sticky bit is refused
        let wide = t.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare(&wide.join("run"), true, me, 0o700, None).unwrap_err();
        assert!(e.to_string().contains("parent"), "{e}");
        assert!(!wide.join("run").exists());
    }

    #[test]
    fn lock_file_is_never_followed_or_borrowed() {
        let t = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let lock = t.path().join("s.lock");
        open_lock_file(&lock, me).unwrap();
        let m = std::fs::symlink_metadata(&lock).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        // an existing lock file (left by a crash) is reused as it is
        std::fs::write(&lock, b"keep").unwrap();
        open_lock_file(&lock, me).unwrap();
        assert_eq!(std::fs::read(&lock).unwrap(), b"keep");
        // a link is refused and its target neither created nor touched
        let target = t.path().join("victim");
        let link = t.path().join("l.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_lock_file(&link, me).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!target.exists());
        // a hard link to another file is refused
        let other = t.path().join("other");
        std::fs::write(&other, b"x").unwrap();
        let hard = t.path().join("h.lock");
        std::fs::hard_link(&other, &hard).unwrap();
        assert!(open_lock_file(&hard, me).is_err());
        // a directory or FIFO is refused without blocking
        let fifo = t.path().join("f.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(open_lock_file(&fifo, me).is_err());
        assert!(open_lock_file(t.path(), me).is_err());
    }
}
