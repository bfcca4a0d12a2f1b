//! Backup error messages say what was wrong without repeating free-form input: a mistyped
//! recipient (perhaps a pasted secret key), a path, an identity file's name. Each test
//! seeds a distinctive string and checks it appears nowhere the caller or a log sees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::backup::*;
use crate::support::*;
use serde_json::json;
use std::sync::Arc;

const TYPO: &str = "age1qqTYPOxDISTINCTIVE7f3a";
const PASTED_SECRET: &str = "AGE-SECRET-KEY-1PASTEDBYMISTAKEDISTINCTIVE";
const PATH_MARK: &str = "PATHxDISTINCTIVE";

#[test]
fn a_mistyped_recipient_is_named_by_its_position_not_quoted() {
    let tv = TestVault::new();
    let (_id, _text, good) = identity();
    let file = tv.dir.path().join("b.age");
    let out = tv
        .cmd()
        .args(["backup", "export"])
        .arg(&file)
        .args(["--recipient", &good, "--recipient", TYPO])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("recipient 2 of 2 is not an age X25519 recipient"),
        "{err}"
    );
    assert!(err.contains("typo"), "{err}");
    assert!(!err.contains(TYPO) && !stdout(&out).contains(TYPO), "{err}");
    assert!(!file.exists());
}

#[test]
fn identity_file_and_backup_path_are_not_quoted_back() {
    let tv = TestVault::new();
    let missing = tv.dir.path().join(format!("{PATH_MARK}-backup.age"));
    let id_missing = tv.dir.path().join(format!("{PATH_MARK}-id.txt"));
    let id_binary = tv.file(&format!("{PATH_MARK}-binary-id"), &[0xff, 0xfe, 0x00, 0x80]);
    let (_id, id_text, _r) = identity();
    let id_ok = tv.file("id.txt", id_text.as_bytes());
    for (id, what) in [
        (&id_missing, "cannot read the identity file"),
        (&id_binary, "not a text age identity file"),
        (&id_ok, "cannot open the backup file"),
    ] {
        let out = tv
            .cmd()
            .args(["backup", "verify"])
            .arg(&missing)
            .arg("--identity")
            .arg(id)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(err.contains(what), "{what}: {err}");
        assert!(!err.contains(PATH_MARK), "{err}");
    }
}

#[test]
fn socket_answers_and_the_daemon_log_do_not_repeat_recipients_or_paths() {
    use crate::support::daemon::Daemon;
    let tv = TestVault::new();
    let (_id, id_text, good) = identity();
    let mut d = Daemon::start(&tv, &["-vv"]);
    let mut c = d.conn();
    let abs = tv.dir.path().join("b.age");
    let answers = [
        c.call(json!({"op":"backup_export","path":abs,"recipients":[good, PASTED_SECRET]})),
        c.call(json!({"op":"backup_export","path":abs,"recipients":[TYPO]})),
        c.call(
            json!({"op":"backup_export","path":format!("relative/{PATH_MARK}.age"),"recipients":[good]}),
        ),
        c.call(
            json!({"op":"backup_verify","path":format!("/nonexistent/{PATH_MARK}.age"),"identity":id_text}),
        ),
        c.call(
            json!({"op":"backup_restore","path":format!("relative/{PATH_MARK}.age"),"identity":id_text}),
        ),
    ];
    d.stop();
    let log = d.log();
    for a in &answers {
        assert_eq!(a["ok"], false, "{a}");
        let text = a.to_string();
        for mark in [PASTED_SECRET, TYPO, PATH_MARK] {
            assert!(!text.contains(mark), "{mark} in {text}");
            assert!(!log.contains(mark), "{mark} in the log:\n{log}");
        }
    }
    let msg = |i: usize| answers[i]["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg(0).contains("recipient 2 of 2"), "{}", msg(0));
    assert!(msg(1).contains("recipient 1 of 1"), "{}", msg(1));
    assert!(msg(2).contains("must be an absolute path"), "{}", msg(2));
    assert!(msg(3).contains("cannot open the backup file"), "{}", msg(3));
    assert!(!abs.exists());
}

#[test]
fn a_secret_key_pasted_as_a_scheduled_recipient_stays_out_of_status() {
    let tv = TestVault::new();
    let eng = Arc::new(tv.engine());
    eng.set_config(tokenvault::config::Config {
        backup: Some(tokenvault::config::BackupConfig {
            directory: tv.dir.path().join("backups").display().to_string(),
            recipients: vec![PASTED_SECRET.into()],
            interval_secs: Some(3600),
            retention: None,
            include_audit: None,
        }),
        ..Default::default()
    });
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while eng.backups().last_backup().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.send(()).unwrap();
    rt.block_on(task).unwrap();
    let status = match run(&eng, tokenvault::Request::Status).unwrap() {
        tokenvault::contract::Response::Status(s) => s,
        other => panic!("{other:?}"),
    };
    let last = status.last_backup.expect("an outcome");
    assert!(!last.ok);
    let text = serde_json::to_string(&last).unwrap();
    assert!(text.contains("recipient 1 of 1"), "{text}");
    assert!(!text.contains(PASTED_SECRET), "{text}");
}
