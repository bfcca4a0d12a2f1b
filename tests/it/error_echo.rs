//! Error messages never quote free-form request values back (a mistyped flag can hold a
//! secret: `--token-url CS-…` pasted in the wrong place). They say what was wrong and what
//! to do; a validated name may be named. Each case passes a distinctive value and checks
//! that neither the CLI's stderr nor a daemon's answer repeats it.

use crate::support::*;

const MARK: &str = "ECHO-d41d8cd98f00b204";

fn refused(tv: &TestVault, args: &[&str], stdin: &str) {
    let out = tv.cmd().args(args).write_stdin(stdin).output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
    assert!(!err.contains(MARK), "{args:?} echoed its input: {err}");
    assert!(
        !stdout(&out).contains(MARK),
        "{args:?} echoed its input on stdout"
    );
    assert!(
        err.trim().len() > 20,
        "{args:?} gave no useful message: {err}"
    );
}

#[test]
fn refusals_name_the_problem_not_the_value() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    let bad_conn = format!("acme/spotify{MARK}");
    let bad_tenant = format!("Acme{MARK}");
    let bad_url = format!("ftp://{MARK}");
    let bad_param = MARK.to_string();
    let secret = tv.file("cs", b"client-secret-value");
    let cases: Vec<Vec<String>> = vec![
        vec!["put".into(), bad_conn.clone()],
        vec!["get".into(), bad_conn.clone()],
        vec!["show".into(), format!("acme/{MARK}/x/../Y")],
        vec!["tenant".into(), "add".into(), bad_tenant.clone()],
        vec![
            "client".into(),
            "set".into(),
            "acme".into(),
            "spotify".into(),
            "--client-id".into(),
            "id".into(),
            "--client-secret-file".into(),
            secret.display().to_string(),
            "--token-url".into(),
            bad_url.clone(),
        ],
        vec![
            "client".into(),
            "set".into(),
            "acme".into(),
            "spotify".into(),
            "--client-id".into(),
            "id".into(),
            "--param".into(),
            bad_param.clone(),
        ],
        vec!["list".into(), "--status".into(), MARK.into()],
        vec!["audit".into(), "--since".into(), MARK.into()],
        vec![
            "apple".into(),
            "key".into(),
            "add".into(),
            "acme".into(),
            "--team-id".into(),
            MARK.into(),
            "--key-id".into(),
            "ABCDEFGHIJ".into(),
            "--p8".into(),
            secret.display().to_string(),
        ],
        vec!["serve".into(), "--socket-mode".into(), MARK.into()],
        vec!["serve".into(), "--socket-group".into(), MARK.to_lowercase()],
    ];
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&tv, &args, r#"{"access_token":"AT-x"}"#);
    }
}

#[test]
fn a_daemon_does_not_echo_request_values_either() {
    let tv = TestVault::new();
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    for req in [
        serde_json::json!({"op":"get","connection":format!("acme/{MARK}")}),
        serde_json::json!({"op":"list","status":MARK}),
        serde_json::json!({"op":"tenant_add","name":MARK}),
    ] {
        let answer = c.call(req.clone()).to_string();
        assert!(answer.contains("\"ok\":false"), "{req}: {answer}");
        assert!(!answer.contains(MARK), "{req} echoed: {answer}");
    }
}
