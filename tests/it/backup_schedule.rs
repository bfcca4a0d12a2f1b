//! Scheduled backups: files appear at the interval, 0600 in a 0700 directory, the newest
//! `retention` are kept, each verifies, and `status` shows the last outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::backup::*;
use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use tokenvault::backup::schedule::scheduled_files;
use tokenvault::config::{BackupConfig, Config};
use tokenvault::engine::Response;

fn engine_with(tv: &TestVault, backup: Option<BackupConfig>) -> Arc<tokenvault::Engine> {
    let eng = tv.engine();
    fill(eng.vault(), &Fill::default());
    eng.set_config(Config {
        backup,
        ..Config::default()
    });
    Arc::new(eng)
}

fn status(eng: &tokenvault::Engine) -> tokenvault::engine::StatusView {
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
        eng.clone(),
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
        eng.clone(),
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
            eng.clone(),
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
