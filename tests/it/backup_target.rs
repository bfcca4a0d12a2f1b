//! What `backup export PATH` does with what is already at PATH, through the real binary
//! (in-process vault and through a daemon): a new name or a regular file is written via an
//! exclusive temp file and rename; a device, FIFO, socket, directory or symbolic link is
//! refused (exit 2) and left exactly as it was; a failure half-way leaves no temp file and
//! the old file intact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::backup::*;
use crate::support::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

fn vault_with_a_tenant() -> TestVault {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    tv
}

/// `backup export PATH --recipient R`, with a hang guard (a FIFO opened for writing would
/// block until a reader comes).
fn export(tv: &TestVault, path: &Path, recipient: &str, daemon: bool) -> std::process::Output {
    let mut c = if daemon { tv.daemon_cmd() } else { tv.cmd() };
    c.args(["backup", "export"])
        .arg(path)
        .args(["--recipient", recipient])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap()
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_refused(out: &std::process::Output, kind: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(kind), "expected {kind:?} in: {err}");
    assert!(err.contains("choose a new file name"), "{err}");
}

#[test]
fn export_to_dev_null_is_refused_and_dev_null_stays_a_device() {
    let tv = vault_with_a_tenant();
    let (_id, _text, recipient) = identity();
    let before = names(Path::new("/dev"));
    let out = export(&tv, Path::new("/dev/null"), &recipient, false);
    assert_refused(&out, "a character device");
    let m = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(m.file_type().is_char_device(), "/dev/null was replaced");
    assert_eq!(m.mode() & 0o777, 0o666);
    // no temp file was even created next to it
    assert!(
        !names(Path::new("/dev"))
            .iter()
            .any(|n| n.starts_with(".null.") && !before.contains(n)),
        "a temp file was left in /dev"
    );
}

#[test]
fn export_to_a_fifo_is_refused_without_blocking_and_the_fifo_stays() {
    let tv = vault_with_a_tenant();
    let (_id, _text, recipient) = identity();
    let dir = tv.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let fifo = dir.join("b.age");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let out = export(&tv, &fifo, &recipient, false);
    assert_refused(&out, "a FIFO");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(names(&dir), vec!["b.age"]);
}

#[test]
fn export_to_a_directory_or_a_socket_is_refused_and_they_stay() {
    let tv = vault_with_a_tenant();
    let (_id, _text, recipient) = identity();
    let dir = tv.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let sub = dir.join("sub.age");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("inside"), b"keep me").unwrap();
    let out = export(&tv, &sub, &recipient, false);
    assert_refused(&out, "a directory");
    assert!(std::fs::symlink_metadata(&sub).unwrap().is_dir());
    assert_eq!(std::fs::read(sub.join("inside")).unwrap(), b"keep me");

    let sock = dir.join("s.age");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = export(&tv, &sock, &recipient, false);
    assert_refused(&out, "a socket");
    assert!(
        std::fs::symlink_metadata(&sock)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_eq!(names(&dir), vec!["s.age", "sub.age"]);
}

#[test]
fn export_through_a_symlink_is_refused_even_to_a_regular_file_of_another_user() {
    let tv = vault_with_a_tenant();
    let (_id, _text, recipient) = identity();
    let theirs = tv.dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let victim = theirs.join("notes.txt");
    std::fs::write(&victim, b"nobody's file").unwrap();
    std::os::unix::fs::chown(&victim, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = tv.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let link = dir.join("b.age");
    std::os::unix::fs::symlink(&victim, &link).unwrap();

    let out = export(&tv, &link, &recipient, false);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    let m = std::fs::symlink_metadata(&victim).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (65534, 0o644));
    assert_eq!(std::fs::read(&victim).unwrap(), b"nobody's file");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), victim);
    assert_eq!(names(&dir), vec!["b.age"]);
    // a dangling link is no better
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(theirs.join("not-yet"), &link).unwrap();
    let out = export(&tv, &link, &recipient, false);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!theirs.join("not-yet").exists());
}

#[test]
fn an_existing_regular_file_is_replaced_by_rename_not_written_in_place() {
    let tv = vault_with_a_tenant();
    let (_id, id_text, recipient) = identity();
    let dir = tv.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("b.age");
    std::fs::write(&file, b"the previous backup").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A second name for the old inode: writing in place (or truncating) would change it.
    let link = dir.join("hard-link");
    std::fs::hard_link(&file, &link).unwrap();
    let old_ino = std::fs::metadata(&file).unwrap().ino();

    let out = export(&tv, &file, &recipient, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = std::fs::symlink_metadata(&file).unwrap();
    assert!(m.is_file());
    assert_ne!(m.ino(), old_ino, "the old inode was written in place");
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&link).unwrap(), b"the previous backup");
    let r = tokenvault::backup::verify(&file, &unlock_identity(&id_text), None).unwrap();
    assert_eq!(r.counts["tenants"], 1);
    // nothing else in the directory: no temp file left
    assert_eq!(names(&dir), vec!["b.age", "hard-link"]);
}

#[test]
fn a_failure_half_way_leaves_no_temp_file_and_the_old_backup_intact() {
    let tv = TestVault::new();
    {
        let eng = tv.engine();
        // Enough records that the exporter has flushed data to its temp file before it
        // meets the damaged one, which sorts last.
        fill(
            eng.vault(),
            &Fill {
                tenants: vec!["acme".into()],
                connections: 300,
                token_len: 2_000,
                audit: 0,
                ..Fill::default()
            },
        );
        let tx = eng.vault().write().unwrap();
        // A sealed value moved to another record: it no longer opens (its associated data
        // names the first record), as a damaged or tampered vault would.
        let rec = tx.connection("acme/spotify/user-000000").unwrap().unwrap();
        tx.put_connection("acme/spotify/zzz-moved", &rec).unwrap();
        tx.commit().unwrap();
    }
    let (_id, _text, recipient) = identity();
    let dir = tv.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("b.age");
    std::fs::write(&file, b"the previous backup").unwrap();

    let out = export(&tv, &file, &recipient, false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("integrity check"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), b"the previous backup");
    assert_eq!(names(&dir), vec!["b.age"], "a temp file was left behind");
}

#[test]
fn the_daemon_refuses_the_same_targets_and_writes_a_new_name() {
    use crate::support::daemon::Daemon;
    let tv = vault_with_a_tenant();
    let (_id, id_text, recipient) = identity();
    let dir = tv.dir.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    let fifo = dir.join("fifo.age");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let link = dir.join("link.age");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let mut d = Daemon::start(&tv, &[]);

    let dev = export(&tv, Path::new("/dev/null"), &recipient, true);
    let fifo_out = export(&tv, &fifo, &recipient, true);
    let link_out = export(&tv, &link, &recipient, true);
    let fresh = dir.join("new.age");
    let ok = export(&tv, &fresh, &recipient, true);
    d.stop();

    assert_refused(&dev, "a character device");
    assert_refused(&fifo_out, "a FIFO");
    assert_eq!(link_out.status.code(), Some(2), "{}", stderr(&link_out));
    assert!(stderr(&link_out).contains("symbolic link"));
    assert!(
        std::fs::symlink_metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(ok.status.success(), "{}\n{}", stderr(&ok), d.log());
    tokenvault::backup::verify(&fresh, &unlock_identity(&id_text), None).unwrap();
    assert_eq!(names(&dir), vec!["fifo.age", "link.age", "new.age"]);
}
