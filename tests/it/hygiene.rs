//! Issue 2, point 6: distinctive secrets are seeded and every command's stdout (except the
//! token `get` is asked for), stderr at debug log level, Debug output, the audit table and
//! the vault file itself are searched for them.

use crate::support::*;
use tokenvault::contract::{Request, Response};

const ACCESS: &str = "SEKRIT-ACCESS-7f3a9c";
const REFRESH: &str = "SEKRIT-REFRESH-51e0bd";
const ID_TOKEN: &str = "SEKRIT-IDTOKEN-c4d2aa";
const CLIENT_SECRET: &str = "SEKRIT-CLIENT-0b77e1";
const PASS: &str = "SEKRIT-PASSPHRASE-9d1f";
const NEW_PASS: &str = "SEKRIT-NEWPASS-2c8e44";
const EXTRA: &str = "SEKRIT-EXTRA-FIELD-aa01";
const ALL: [&str; 7] = [
    ACCESS,
    REFRESH,
    ID_TOKEN,
    CLIENT_SECRET,
    PASS,
    NEW_PASS,
    EXTRA,
];

fn assert_clean(what: &str, text: &str, allowed: &[&str]) {
    for s in ALL {
        if allowed.contains(&s) {
            continue;
        }
        assert!(!text.contains(s), "{what} leaked {s}:\n{text}");
    }
}

#[test]
fn no_command_prints_a_secret() {
    let tv = TestVault::empty();
    let pass = tv.file("pass-sekrit", format!("{PASS}\n").as_bytes());
    let new_pass = tv.file("newpass-sekrit", NEW_PASS.as_bytes());
    let cs = tv.file("cs", CLIENT_SECRET.as_bytes());
    let token = tv.file(
        "token.json",
        format!(
            r#"{{"access_token":"{ACCESS}","refresh_token":"{REFRESH}","id_token":"{ID_TOKEN}","expires_in":3600,"scope":"a b","custom":"{EXTRA}"}}"#
        )
        .as_bytes(),
    );
    let mut runs: Vec<(Vec<String>, Option<String>)> = Vec::new();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    runs.push((
        s(&["init", "--kdf-memory-mib", "19", "--kdf-iterations", "2"]),
        None,
    ));
    runs.push((s(&["tenant", "add", "acme"]), None));
    runs.push((s(&["tenant", "add", "beta"]), None));
    runs.push((
        vec![
            "client".into(),
            "set".into(),
            "acme".into(),
            "spotify".into(),
            "--client-id".into(),
            "cid".into(),
            "--client-secret-file".into(),
            cs.display().to_string(),
        ],
        None,
    ));
    runs.push((
        vec![
            "put".into(),
            "acme/spotify/alice".into(),
            "--from".into(),
            token.display().to_string(),
        ],
        None,
    ));
    runs.push((
        s(&["put", "beta/google/bob"]),
        Some(format!(
            r#"{{"access_token":"{ACCESS}-2","refresh_token":"{REFRESH}-2"}}"#
        )),
    ));
    // malformed inputs that carry secrets: the error must name the field, not the value
    runs.push((
        s(&["put", "acme/spotify/eve"]),
        Some(format!(
            r#"{{"access_token":"{ACCESS}","refresh_token":{{"x":"{REFRESH}"}}}}"#
        )),
    ));
    runs.push((
        s(&["put", "acme/spotify/eve"]),
        Some(format!(
            r#"{{"access_token":"{ACCESS}","expires_in":"{REFRESH}"}}"#
        )),
    ));
    runs.push((
        s(&["put", "acme/spotify/eve"]),
        Some(format!(r#"{{"access_token":"{ACCESS}" "#)),
    ));
    for json in [&[][..], &["--json"][..]] {
        for base in [
            &["tenant", "list"][..],
            &["client", "list"],
            &["show", "acme/spotify/alice"],
            &["list"],
            &["status"],
            &["audit"],
        ] {
            let mut v = s(base);
            v.extend(s(json));
            runs.push((v, None));
        }
    }
    runs.push((s(&["health"]), None));
    runs.push((s(&["rekey"]), None));
    runs.push((
        vec![
            "passwd".into(),
            "--new-passphrase-file".into(),
            new_pass.display().to_string(),
        ],
        None,
    ));
    let mut outputs = Vec::new();
    let mut current_pass = pass.clone();
    for (args, stdin) in &runs {
        for log in ["text", "json"] {
            let changes_state = args[0] == "init"
                || args[0] == "passwd"
                || args[0] == "rekey"
                || args[0] == "tenant" && args[1] == "add"
                || args[0] == "put"
                || args[0] == "client" && args[1] == "set";
            if changes_state && log == "json" {
                continue; // state-changing commands run once
            }
            let mut c = tv.cmd();
            c.env("TOKENVAULT_PASSPHRASE_FILE", &current_pass)
                .env("TOKENVAULT_LOG", "trace")
                .args(["--log-format", log, "-vv"])
                .args(args);
            if let Some(input) = stdin {
                c.write_stdin(input.clone());
            }
            let out = c.output().unwrap();
            let malformed = args.get(1).map(String::as_str) == Some("acme/spotify/eve");
            assert_eq!(
                out.status.success(),
                !malformed,
                "{args:?}: {}",
                stderr(&out)
            );
            assert_clean(&format!("stdout of {args:?}"), &stdout(&out), &[]);
            assert_clean(&format!("stderr of {args:?}"), &stderr(&out), &[]);
            outputs.push((args.clone(), out));
        }
        if args[0] == "passwd" {
            current_pass = new_pass.clone();
        }
    }
    // the malformed puts failed with a message naming the field
    let eve: Vec<_> = outputs
        .iter()
        .filter(|(a, _)| a.get(1).map(String::as_str) == Some("acme/spotify/eve"))
        .collect();
    assert_eq!(eve.len(), 3);
    for (_, out) in eve {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    }
    // get prints the access token and nothing else secret
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &new_pass)
        .args(["-vv", "get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("{ACCESS}\n"));
    assert_clean("stderr of get", &stderr(&out), &[]);
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE_FILE", &new_pass)
        .args(["get", "--json", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_clean("stdout of get --json", &stdout(&out), &[ACCESS]);
    // wrong passphrase: the error does not quote what was typed
    let out = tv
        .cmd()
        .env("TOKENVAULT_PASSPHRASE", PASS)
        .env_remove("TOKENVAULT_PASSPHRASE_FILE")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_clean("stderr of wrong passphrase", &stderr(&out), &[]);
    // the file holds no secret in clear
    let bytes = std::fs::read(&tv.path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert_clean("the vault file", &text, &[]);
}

#[tokio::test]
async fn debug_output_and_audit_records_hold_no_secret() {
    let tv = TestVault::new();
    let engine = tv.engine();
    let a = admin();
    engine
        .handle(
            &a,
            Request::TenantAdd {
                name: "acme".into(),
            },
        )
        .await
        .unwrap();
    let set = Request::ClientSet {
        tenant: "acme".into(),
        provider: "spotify".into(),
        client_id: "cid".into(),
        client_secret: Some(tokenvault::secret::Secret::new(CLIENT_SECRET)),
        token_url: None,
        authorization_url: None,
        device_authorization_url: None,
        revocation_url: None,
        params: Default::default(),
    };
    assert_clean("Debug of ClientSet", &format!("{set:?}"), &[]);
    engine.handle(&a, set).await.unwrap();
    let put = Request::Put {
        connection: "acme/spotify/alice".into(),
        token: serde_json::json!({"access_token": ACCESS, "refresh_token": REFRESH, "id_token": ID_TOKEN, "expires_in": 3600}),
    };
    engine.handle(&a, put).await.unwrap();
    let resp = engine
        .handle(
            &a,
            Request::Get {
                connection: "acme/spotify/alice".into(),
                min_ttl: None,
                force_refresh: false,
            },
        )
        .await
        .unwrap();
    assert_clean("Debug of the Token response", &format!("{resp:?}"), &[]);
    let Response::Token { token, .. } = &resp else {
        panic!()
    };
    assert_eq!(token.expose(), ACCESS);
    let rx = engine.vault().read().unwrap();
    let rec = rx.connection("acme/spotify/alice").unwrap().unwrap();
    assert_clean("Debug of ConnectionRecord", &format!("{rec:?}"), &[]);
    let secrets = rx.secrets("acme/spotify/alice", &rec).unwrap();
    assert_clean("Debug of TokenSecrets", &format!("{secrets:?}"), &[]);
    let client = rx.client("acme", "spotify").unwrap().unwrap();
    assert_clean("Debug of ClientRecord", &format!("{client:?}"), &[]);
    assert_clean("Debug of the Engine", &format!("{engine:?}"), &[]);
    drop(rx);
    engine.flush_audit().unwrap();
    let audit = engine
        .handle(
            &a,
            Request::Audit {
                tenant: None,
                since: None,
            },
        )
        .await
        .unwrap();
    let Response::Audit { records } = &audit else {
        panic!()
    };
    let actions: Vec<_> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["tenant_add", "client_set", "put", "get"]);
    assert_clean(
        "audit records",
        &format!("{records:?} {}", serde_json::to_string(records).unwrap()),
        &[],
    );
}

/// The refresh path (issue 3) through the binary at trace level: the client secret, the
/// imported and rotated tokens, and provider error bodies quoting the refresh token or the
/// client secret appear in no stdout (except the token `get` prints), no stderr, and no
/// audit record.
#[test]
fn the_refresh_path_prints_no_secret() {
    use crate::support::fake_provider::{CLIENT_ID, Canned, FakeProvider};
    // every token the fake issues, and the client secret, carry this marker
    const MARK: &str = "SEKRIT-";
    const SECRET: &str = "SEKRIT-REFRESH-CLIENT-5e1f";
    let fp = FakeProvider::start_background();
    fp.with(|s| {
        s.token_prefix = "SEKRIT-ROT-77aa-".into();
        s.client_secret = SECRET.into();
    });
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"))
    };
    let tv = TestVault::new();
    let clean = |what: &str, text: &str| {
        assert!(!text.contains(MARK), "{what} leaked a secret:\n{text}");
        assert!(
            !text.contains(&basic),
            "{what} leaked the Basic header:\n{text}"
        );
    };
    let run = |args: &[&str], stdin: Option<String>, json_log: bool| {
        let mut c = tv.cmd();
        c.env("TOKENVAULT_LOG", "trace")
            .args([
                "-vv",
                "--log-format",
                if json_log { "json" } else { "text" },
            ])
            .args(args);
        if let Some(input) = stdin {
            c.write_stdin(input);
        }
        let out = c.output().unwrap();
        clean(&format!("stderr of {args:?}"), &stderr(&out));
        out
    };
    let ok = |args: &[&str], stdin: Option<String>| {
        let out = run(args, stdin, false);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    let put = |conn: &str| {
        let mut t = fp.new_family();
        assert!(t["refresh_token"].as_str().unwrap().starts_with(MARK));
        t["expires_in"] = 0.into();
        clean(
            "put stdout",
            &stdout(&ok(&["put", conn], Some(t.to_string()))),
        );
    };
    let cs = tv.file("cs", SECRET.as_bytes());
    for args in [
        &["tenant", "add", "acme"][..],
        &[
            "client",
            "set",
            "acme",
            "spotify",
            "--client-id",
            CLIENT_ID,
            "--client-secret-file",
            cs.to_str().unwrap(),
            "--token-url",
            &fp.token_url(),
        ],
    ] {
        clean("stdout", &stdout(&ok(args, None)));
    }
    // refresh CONNECTION rotates the refresh token
    put("acme/spotify/alice");
    clean(
        "refresh",
        &stdout(&ok(&["refresh", "acme/spotify/alice"], None)),
    );
    clean(
        "refresh --json",
        &stdout(&ok(&["refresh", "acme/spotify/alice", "--json"], None)),
    );
    // get of an expired connection refreshes on demand and prints only the new token
    put("acme/spotify/bob");
    let out = ok(&["get", "acme/spotify/bob"], None);
    assert_eq!(stdout(&out), "SEKRIT-ROT-77aa-at-2-1\n");
    // refresh --due
    put("acme/spotify/carol");
    for json in [false, true] {
        let args: &[&str] = if json {
            &["refresh", "--due", "--json"]
        } else {
            &["refresh", "--due"]
        };
        clean("refresh --due", &stdout(&ok(args, None)));
    }
    assert_eq!(fp.requests(), 4);
    // error bodies that quote the refresh token and the client secret
    put("acme/spotify/dave");
    fp.script([Canned::EchoInvalidGrant]);
    let out = run(&["refresh", "acme/spotify/dave"], None, false);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    // the logs are on, so the checks above see what the refresh path logs
    assert!(stderr(&out).contains("refresh failed"), "{}", stderr(&out));
    clean("stdout of a failed refresh", &stdout(&out));
    // frank is the only due connection: the 500 goes to its refresh
    put("acme/spotify/frank");
    fp.script([Canned::EchoServerError]);
    let out = run(&["refresh", "--due", "--json"], None, false);
    clean("stdout of refresh --due after a 500", &stdout(&out));
    assert!(
        stdout(&out).contains("acme/spotify/frank"),
        "{}",
        stdout(&out)
    );
    put("acme/spotify/erin");
    fp.script(vec![Canned::EchoServerError; 3]);
    let out = run(&["get", "acme/spotify/erin"], None, true);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    clean("stdout of a failed get", &stdout(&out));
    assert_eq!(fp.requests(), 4 + 1 + 1 + 3);
    for args in [
        &["show", "acme/spotify/erin", "--json"][..],
        &["list", "--json"],
        &["status", "--json"],
        &["remove", "acme/spotify/alice"],
        &["provider", "list"],
        &["provider", "list", "--json"],
        &["provider", "show", "spotify"],
        &["provider", "show", "spotify", "--json"],
        &["client", "list", "--json"],
        &["client", "remove", "acme", "spotify"],
        &["tenant", "remove", "acme", "--force"],
    ] {
        clean(&format!("stdout of {args:?}"), &stdout(&ok(args, None)));
    }
    let audit = stdout(&ok(&["audit", "--json"], None));
    clean("the audit table", &audit);
    let actions: Vec<String> = serde_json::from_str::<serde_json::Value>(&audit)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    for a in ["get", "remove", "client_remove", "tenant_remove"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    let bytes = std::fs::read(&tv.path).unwrap();
    clean("the vault file", &String::from_utf8_lossy(&bytes));
}
