//! Scheduled backups: files appear at the interval, 0600 in a 0700 directory, the newest
//! `retention` are kept, each verifies, and `status` shows the last outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::backup::*;
use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use tokenvault::backup::schedule::scheduled_files;
use tokenvault::config::{BackupConfig, Config};
use tokenvault::contract::Response;

fn engine_with(tv: &TestVault, backup: Option<BackupConfig>) -> Arc<tokenvault::Engine> {
    let eng = tv.engine();
    fill(eng.vault(), &Fill::default());
    eng.set_config(Config {
        backup,
        ..Config::default()
    });
    Arc::new(eng)
}

fn status(eng: &tokenvault::Engine) -> tokenvault::contract::StatusView {
    match run(eng, tokenvault::Request::Status).unwrap() {
        Response::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn scheduled_backups_rotate_and_show_in_status() {
    let tv = TestVault::new();
    let dir = tv.dir.path().join("backups");
    let (_id, id_text, recipient) = identity();
    let eng = engine_with(
        &tv,
        Some(BackupConfig {
            directory: dir.display().to_string(),
            recipients: vec![recipient],
            interval_secs: Some(1),
            retention: Some(2),
            include_audit: Some(true),
        }),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(tokenvault::backup::run_scheduled_backups(
        eng.backups().clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    std::thread::sleep(std::time::Duration::from_millis(4500));
    stop.send(()).unwrap();
    rt.block_on(task).unwrap();

    let files = scheduled_files(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in &files {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let r = tokenvault::backup::verify(f, &unlock_identity(&id_text), false).unwrap();
        assert_eq!(r.counts["connections"], 6);
        assert!(r.counts["audit"] > 0);
    }
    // nothing but the two backups (no temp files)
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let s = status(&eng);
    let last = s.last_backup.expect("status shows the last backup");
    assert!(last.ok, "{last:?}");
    assert_eq!(last.path.as_deref(), files.last().and_then(|p| p.to_str()));
    assert!(last.next_at.is_some());
}

#[test]
fn a_failing_scheduled_backup_shows_in_status_and_does_not_stop_the_loop() {
    let tv = TestVault::new();
    let dir = tv.dir.path().join("backups");
    let eng = engine_with(
        &tv,
        Some(BackupConfig {
            directory: dir.display().to_string(),
            recipients: vec![],
            interval_secs: Some(3600),
            retention: None,
            include_audit: None,
        }),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(tokenvault::backup::run_scheduled_backups(
        eng.backups().clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let last = status(&eng).last_backup.expect("an outcome");
    assert!(!last.ok);
    assert!(last.error.unwrap().contains("recipients"));
    stop.send(()).unwrap();
    rt.block_on(task).unwrap();
    assert!(scheduled_files(&dir).is_empty());
}

#[test]
fn without_a_backup_section_nothing_happens_and_shutdown_is_prompt() {
    let tv = TestVault::new();
    let eng = engine_with(&tv, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    rt.block_on(async {
        tokenvault::backup::run_scheduled_backups(
            eng.backups().clone(),
            tokio::time::sleep(std::time::Duration::from_millis(200)),
        )
        .await
    });
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(status(&eng).last_backup.is_none());
}

#[test]
fn serve_takes_scheduled_backups_and_status_shows_them() {
    use crate::support::daemon::Daemon;
    let tv = TestVault::new();
    let dir = tv.dir.path().join("served-backups");
    let (_id, id_text, recipient) = identity();
    tv.setup(vec![tokenvault::Request::TenantAdd {
        name: "acme".into(),
    }]);
    tv.write_config(&format!(
        "[backup]\ndirectory = {:?}\nrecipients = [{:?}]\ninterval_secs = 1\nretention = 2\n",
        dir.display().to_string(),
        recipient
    ));
    let mut d = Daemon::start(&tv, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while scheduled_files(&dir).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = tv.daemon_cmd().args(["status", "--json"]).output().unwrap();
    let human = tv.daemon_cmd().arg("status").output().unwrap();
    let (status, _) = d.stop();
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    let line = human
        .lines()
        .find(|l| l.starts_with("last backup:"))
        .unwrap_or_else(|| panic!("no backup line in status:\n{human}"));
    assert!(
        line.contains(" ok ") && line.contains("served-backups"),
        "{line}"
    );
    assert!(
        human.lines().any(|l| l.starts_with("next backup:")),
        "{human}"
    );
    assert!(status.success());
    let files = scheduled_files(&dir);
    assert_eq!(files.len(), 2, "{files:?}\n{}", d.log());
    for f in &files {
        let r = tokenvault::backup::verify(f, &unlock_identity(&id_text), false).unwrap();
        assert_eq!(r.counts["tenants"], 1);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["last_backup"]["ok"], true, "{v}");
}

/// The names of the files in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn private_dir(p: &std::path::Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
}

const PLANTED: &str = "tokenvault-20990102T000000Z.age";

/// The attack of issue 14: an empty, future-dated file in the backup directory used to stop
/// every scheduled backup and show as "last backup: ok 2099-01-02".
#[test]
fn a_planted_future_file_does_not_silence_serve_and_is_reported_not_deleted() {
    use crate::support::daemon::Daemon;
    let tv = TestVault::new();
    let dir = tv.dir.path().join("served-backups");
    private_dir(&dir);
    std::fs::write(dir.join(PLANTED), b"").unwrap();
    let (_id, id_text, recipient) = identity();
    tv.write_config(&format!(
        "[backup]\ndirectory = {:?}\nrecipients = [{:?}]\ninterval_secs = 1\nretention = 2\n",
        dir.display().to_string(),
        recipient
    ));
    let started = chrono::Utc::now().timestamp();
    let mut d = Daemon::start(&tv, &[]);
    // Wait until retention has had work to do: three backups seen, two kept.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let real: Vec<String> = names(&dir)
            .into_iter()
            .filter(|n| n != PLANTED && !n.ends_with(".tmp"))
            .collect();
        seen.extend(real.iter().cloned());
        if seen.len() >= 3 && real.len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backups seen: {seen:?}, now {real:?}\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let human = tv.daemon_cmd().arg("status").output().unwrap();
    let json = tv.daemon_cmd().args(["status", "--json"]).output().unwrap();
    d.stop();
    let log = d.log();

    // the planted file is still there, untouched, and was never taken for a backup
    assert_eq!(std::fs::read(dir.join(PLANTED)).unwrap(), b"");
    let human = stdout(&human);
    let last = human
        .lines()
        .find(|l| l.starts_with("last backup:"))
        .unwrap_or_else(|| panic!("no backup line:\n{human}"));
    assert!(last.contains(" ok "), "{last}");
    assert!(!last.contains("2099") && !last.contains(PLANTED), "{last}");
    let warning = human
        .lines()
        .find(|l| l.starts_with("backup warning:"))
        .unwrap_or_else(|| panic!("no warning about the planted file:\n{human}"));
    assert!(
        warning.contains("holds 1 file tokenvault did not write") && warning.contains(PLANTED),
        "{warning}"
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let at = v["last_backup"]["at"].as_i64().unwrap();
    assert!(at >= started && at <= chrono::Utc::now().timestamp(), "{v}");
    assert!(
        v["last_backup"]["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w.as_str().unwrap().contains(PLANTED))),
        "{v}"
    );
    assert!(log.contains("did not write"), "{log}");
    // the backups are real
    let real: Vec<_> = names(&dir).into_iter().filter(|n| n != PLANTED).collect();
    assert_eq!(real.len(), 2, "{real:?}");
    for n in &real {
        tokenvault::backup::verify(&dir.join(n), &unlock_identity(&id_text), false).unwrap();
    }
}

#[test]
fn serve_refuses_a_backup_directory_others_can_write_own_or_redirect() {
    use crate::support::daemon::Daemon;
    let tv = TestVault::new();
    let (_id, _text, recipient) = identity();
    let config = |dir: &std::path::Path| {
        tv.write_config(&format!(
            "[backup]\ndirectory = {:?}\nrecipients = [{:?}]\n",
            dir.display().to_string(),
            recipient
        ))
    };
    let open = tv.dir.path().join("open");
    private_dir(&open);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let group = tv.dir.path().join("group");
    private_dir(&group);
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o770)).unwrap();
    let foreign = tv.dir.path().join("foreign");
    private_dir(&foreign);
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    let link = tv.dir.path().join("link");
    let real = tv.dir.path().join("real");
    private_dir(&real);
    std::os::unix::fs::symlink(&real, &link).unwrap();

    for (dir, expect) in [
        (&open, "writable by group or others (mode 0777): `chmod 700"),
        (&group, "writable by group or others (mode 0770)"),
        (&foreign, "is owned by uid 65534"),
        (&link, "is a symbolic link"),
    ] {
        config(dir);
        match Daemon::try_start(&tv, &[]) {
            Ok(mut d) => {
                d.stop();
                panic!("serve started with backup directory {}", dir.display());
            }
            Err(log) => {
                assert!(log.contains("exit status: 6"), "{log}");
                assert!(log.contains(expect), "{expect}: {log}");
            }
        }
        assert!(names(dir).is_empty(), "{:?}", names(dir));
    }
    // the same directory, fixed, is accepted
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o700)).unwrap();
    config(&open);
    let mut d = Daemon::start(&tv, &[]);
    d.stop();
}

fn clocked_engine(
    tv: &TestVault,
    backup: BackupConfig,
) -> (tokenvault::Engine, Arc<crate::support::apple::TestClock>) {
    let clock = crate::support::apple::TestClock::new();
    // An hour back, so that what it records is in the past for a CLI run on the real clock.
    clock.advance(-3600);
    let eng = tokenvault::Engine::with_clock(
        tokenvault::vault::Vault::open(&tv.path, &tokenvault::secret::Secret::new(PASSPHRASE))
            .unwrap(),
        clock.clone(),
    );
    fill(eng.vault(), &Fill::default());
    eng.set_config(Config {
        backup: Some(backup),
        ..Config::default()
    });
    (eng, clock)
}

fn stamp(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("tokenvault-%Y%m%dT%H%M%SZ")
        .to_string()
}

#[test]
fn a_scheduled_backup_never_writes_over_what_is_planted_at_its_name() {
    use std::os::unix::fs::FileTypeExt;
    let tv = TestVault::new();
    let dir = tv.dir.path().join("backups");
    private_dir(&dir);
    let (_id, id_text, recipient) = identity();
    let cfg = BackupConfig {
        directory: dir.display().to_string(),
        recipients: vec![recipient],
        interval_secs: Some(60),
        retention: Some(5),
        include_audit: None,
    };
    let (eng, clock) = clocked_engine(&tv, cfg.clone());
    let base = stamp(clock.get());
    let fifo = dir.join(format!("{base}.age"));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let victim = tv.file("victim", b"not a backup");
    std::os::unix::fs::symlink(&victim, dir.join(format!("{base}-1.age"))).unwrap();

    let report = tokenvault::backup::take_scheduled_backup(eng.backups(), &cfg).unwrap();
    assert_eq!(
        report.path,
        dir.join(format!("{base}-2.age")).display().to_string()
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"not a backup");
    tokenvault::backup::verify(
        std::path::Path::new(&report.path),
        &unlock_identity(&id_text),
        false,
    )
    .unwrap();
}

#[test]
fn retention_deletes_only_recorded_unchanged_files_and_status_trusts_the_record() {
    let tv = TestVault::new();
    let dir = tv.dir.path().join("backups");
    private_dir(&dir);
    let old_foreign = "tokenvault-20000101T000000Z.age";
    std::fs::write(dir.join(old_foreign), b"x").unwrap();
    std::fs::write(dir.join(PLANTED), b"").unwrap();
    let (_id, _text, recipient) = identity();
    let cfg = BackupConfig {
        directory: dir.display().to_string(),
        recipients: vec![recipient.clone()],
        interval_secs: Some(3600),
        retention: Some(2),
        include_audit: None,
    };
    let (eng, clock) = clocked_engine(&tv, cfg.clone());
    let mut taken = Vec::new();
    let take = |eng: &tokenvault::Engine, taken: &mut Vec<std::path::PathBuf>| {
        let r = tokenvault::backup::take_scheduled_backup(eng.backups(), &cfg).unwrap();
        taken.push(std::path::PathBuf::from(&r.path));
        clock.advance(10);
        r
    };
    take(&eng, &mut taken);
    take(&eng, &mut taken);
    take(&eng, &mut taken);
    assert!(!taken[0].exists(), "the oldest recorded backup is pruned");
    assert!(taken[1].exists() && taken[2].exists());
    // Someone rewrites b2 in place, same size: it is no longer the file the vault wrote.
    let mut bytes = std::fs::read(&taken[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&taken[1], &bytes).unwrap();
    let r4 = take(&eng, &mut taken);
    assert!(taken[1].exists(), "a changed file must not be deleted");
    assert!(
        r4.notes.iter().any(|n| n.contains("content changed")),
        "{:?}",
        r4.notes
    );
    take(&eng, &mut taken);
    assert!(!taken[2].exists(), "b3 is recorded and unchanged: pruned");
    assert!(taken[3].exists() && taken[4].exists());
    // never deleted: the planted files and the changed one
    assert_eq!(std::fs::read(dir.join(old_foreign)).unwrap(), b"x");
    assert!(dir.join(PLANTED).exists());
    let mut expected = vec![
        old_foreign.to_owned(),
        PLANTED.to_owned(),
        taken[1].file_name().unwrap().to_string_lossy().into_owned(),
        taken[3].file_name().unwrap().to_string_lossy().into_owned(),
        taken[4].file_name().unwrap().to_string_lossy().into_owned(),
    ];
    expected.sort();
    assert_eq!(names(&dir), expected);
    let newest_at = clock.get() - 10;
    drop(eng);

    // `status` without a daemon reads the vault's record, not the names on disk.
    tv.write_config(&format!(
        "[backup]\ndirectory = {:?}\nrecipients = [{:?}]\ninterval_secs = 3600\n",
        dir.display().to_string(),
        recipient
    ));
    let out = tv.cmd().args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &v["last_backup"];
    assert_eq!(b["ok"], true, "{v}");
    assert_eq!(b["at"], newest_at, "{v}");
    assert_eq!(b["path"], taken[4].display().to_string(), "{v}");
    assert_eq!(b["next_at"], newest_at + 3600, "{v}");
    let warnings = b["warnings"].to_string();
    assert!(
        warnings.contains("holds 3 files tokenvault did not write"),
        "{warnings}"
    );
    let human = stdout(&tv.cmd().arg("status").output().unwrap());
    assert!(
        human.contains("backup warning: backup directory"),
        "{human}"
    );
    let last = human
        .lines()
        .find(|l| l.starts_with("last backup:"))
        .unwrap_or_else(|| panic!("{human}"));
    assert!(last.contains(" ok ") && !last.contains("2099"), "{last}");
    assert!(last.contains(taken[4].to_str().unwrap()), "{last}");
}

/// After start-up (a `chmod` later, or a SIGHUP to another directory) every round checks
/// the directory again and refuses to write into it, loudly.
#[test]
fn a_directory_opened_up_after_start_stops_scheduled_backups_with_the_fix() {
    let tv = TestVault::new();
    let dir = tv.dir.path().join("backups");
    private_dir(&dir);
    let (_id, _text, recipient) = identity();
    let cfg = BackupConfig {
        directory: dir.display().to_string(),
        recipients: vec![recipient],
        interval_secs: Some(3600),
        retention: None,
        include_audit: None,
    };
    let eng = engine_with(&tv, Some(cfg.clone()));
    tokenvault::backup::take_scheduled_backup(eng.backups(), &cfg).unwrap();
    assert_eq!(names(&dir).len(), 1);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o757)).unwrap();
    let err = tokenvault::backup::take_scheduled_backup(eng.backups(), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("writable by group or others (mode 0757)") && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(
        names(&dir).len(),
        1,
        "nothing was written into the open directory"
    );
}
