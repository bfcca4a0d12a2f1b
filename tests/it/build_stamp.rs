//! build.rs (the commit and date of `--version`) never fails a build: without git or
//! outside a checkout the commit is "unknown"; SOURCE_DATE_EPOCH fixes the date. The build
//! script's own functions are compiled in here.

#[allow(dead_code)]
#[path = "../../build.rs"]
mod build_script;

use build_script::{build_date, clean, commit_in};

#[test]
fn outside_a_checkout_the_commit_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Vec::new();
    assert_eq!(commit_in(dir.path(), &mut watch), "unknown");
    assert!(watch.is_empty());
    // a directory that does not exist either
    assert_eq!(commit_in(&dir.path().join("nope"), &mut watch), "unknown");
}

#[test]
fn in_this_checkout_the_commit_is_the_head_and_its_files_are_watched() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let head = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    let Ok(head) = head.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()) else {
        eprintln!("skipped: no git here");
        return;
    };
    if head.is_empty() {
        eprintln!("skipped: not a git checkout");
        return;
    }
    let mut watch = Vec::new();
    assert_eq!(commit_in(repo, &mut watch), head);
    assert!(watch.iter().any(|w| w.ends_with("/HEAD")), "{watch:?}");
    assert!(
        watch.iter().all(|w| std::path::Path::new(w).exists()),
        "{watch:?}"
    );
}

#[test]
fn source_date_epoch_fixes_the_date_and_junk_falls_back_to_today() {
    assert_eq!(build_date(Some("1700000000")), "2023-11-14");
    assert_eq!(build_date(Some("0")), "1970-01-01");
    assert_eq!(build_date(Some("951782400")), "2000-02-29");
    let today = build_date(Some("junk"));
    assert_eq!(today, build_date(None));
    assert_eq!(today.len(), 10);
}

#[test]
fn a_commit_override_must_look_like_one() {
    assert_eq!(clean(" abc123def456 \n").as_deref(), Some("abc123def456"));
    assert_eq!(clean("bad value!"), None);
    assert_eq!(clean(""), None);
}
