//! A refresh that cannot happen never takes a still-valid access token away (and statuses
//! never claim an expiry that has not happened). Table-driven through the real binary:
//! (has a refresh token, token valid or expired, what the provider answers) → (status after
//! `refresh`, what `get` gives, what the reason says).

use crate::support::fake_provider::{Canned, FakeProvider, cli_vault_with_spotify_client};
use crate::support::*;

fn show_json(tv: &TestVault, conn: &str) -> serde_json::Value {
    let out = tv.cmd().args(["show", conn, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    NotAsked,
    InvalidGrant,
    InvalidClient,
    Unavailable,
    Ok,
}

#[test]
fn a_refresh_that_cannot_happen_keeps_a_valid_token_served() {
    let now = chrono::Utc::now().timestamp();
    // (has rt, valid, answer, status after refresh, get exit, get prints the old token, reason has)
    let table: &[(bool, bool, Answer, &str, i32, bool, &str)] = &[
        (
            false,
            true,
            Answer::NotAsked,
            "needs_reauth",
            0,
            true,
            "works until",
        ),
        (
            false,
            false,
            Answer::NotAsked,
            "needs_reauth",
            6,
            false,
            "expired at",
        ),
        (
            true,
            true,
            Answer::InvalidGrant,
            "needs_reauth",
            0,
            true,
            "still works until",
        ),
        (
            true,
            false,
            Answer::InvalidGrant,
            "needs_reauth",
            6,
            false,
            "invalid_grant",
        ),
        (
            true,
            true,
            Answer::InvalidClient,
            "error",
            0,
            true,
            "still works until",
        ),
        (true, true, Answer::Unavailable, "retrying", 0, true, ""),
        (
            true,
            false,
            Answer::Unavailable,
            "token_expired",
            7,
            false,
            "",
        ),
        (true, true, Answer::Ok, "connected", 0, false, ""),
    ];
    for (i, &(rt, valid, answer, want_status, get_code, old_token, reason_has)) in
        table.iter().enumerate()
    {
        let case = format!("case {i}: rt={rt} valid={valid} {answer:?}");
        let fp = FakeProvider::start_background();
        let tv = cli_vault_with_spotify_client(&fp, &[]);
        let exp = if valid { now + 3600 } else { now - 60 };
        let mut body = serde_json::json!({"access_token": "AT-old-kept", "expires_at": exp});
        if rt {
            let fam = fp.new_family();
            body["refresh_token"] = fam["refresh_token"].clone();
        }
        tv.cmd()
            .args(["put", "acme/spotify/alice"])
            .write_stdin(body.to_string())
            .assert()
            .success();
        match answer {
            Answer::InvalidGrant => fp.script([Canned::InvalidGrant]),
            Answer::InvalidClient => fp.script([Canned::InvalidClient]),
            Answer::Unavailable => fp.with(|s| s.repeat = vec![Canned::Status(503)]),
            Answer::NotAsked | Answer::Ok => {}
        }
        let r = tv
            .cmd()
            .args(["refresh", "acme/spotify/alice"])
            .output()
            .unwrap();
        let refreshed_ok = r.status.success();
        assert_eq!(
            refreshed_ok,
            matches!(answer, Answer::Ok),
            "{case}: {}",
            stderr(&r)
        );
        if matches!(answer, Answer::NotAsked) {
            assert_eq!(fp.requests(), 0, "{case}: nothing to refresh with");
        }
        let v = show_json(&tv, "acme/spotify/alice");
        assert_eq!(v["status"], want_status, "{case}: {v}");
        let reason = v["reason"].as_str().unwrap_or("");
        assert!(reason.contains(reason_has), "{case}: reason {reason:?}");
        if valid {
            // never a claim of an expiry that has not happened
            assert!(!reason.contains("expired"), "{case}: reason {reason:?}");
        }
        if get_code == 7 {
            continue; // the retry budget may hold the next call back; the status says it all
        }
        let g = tv
            .cmd()
            .args(["get", "acme/spotify/alice"])
            .output()
            .unwrap();
        assert_eq!(g.status.code(), Some(get_code), "{case}: {}", stderr(&g));
        if get_code == 0 {
            let token = stdout(&g);
            assert_eq!(token == "AT-old-kept\n", old_token, "{case}: got {token:?}");
        } else {
            let err = stderr(&g);
            assert!(!err.contains("AT-old-kept"), "{case}: {err}");
        }
        // a forced refresh that fails leaves the valid token served too
        if valid && !matches!(answer, Answer::Ok) {
            match answer {
                Answer::InvalidGrant => fp.script([Canned::InvalidGrant]),
                Answer::InvalidClient => fp.script([Canned::InvalidClient]),
                _ => {}
            }
            let f = tv
                .cmd()
                .args(["get", "acme/spotify/alice", "--force-refresh"])
                .output()
                .unwrap();
            assert_eq!(f.status.code(), Some(0), "{case}: {}", stderr(&f));
            assert_eq!(stdout(&f), "AT-old-kept\n", "{case}");
        }
    }
}

#[test]
fn a_connected_token_that_expired_is_shown_as_token_expired() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    let past = chrono::Utc::now().timestamp() - 5;
    tv.cmd()
        .args(["put", "acme/spotify/bob"])
        .write_stdin(format!(
            r#"{{"access_token":"AT-gone","expires_at":{past}}}"#
        ))
        .assert()
        .success();
    let v = show_json(&tv, "acme/spotify/bob");
    assert_eq!(v["status"], "token_expired", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no refresh token"),
        "{v}"
    );
    let out = tv
        .cmd()
        .args(["list", "acme", "--status", "token_expired", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let out = tv
        .cmd()
        .args(["list", "acme", "--status", "connected", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    let out = tv.cmd().args(["status", "--json"]).output().unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["by_status"]["token_expired"], 1, "{st}");
    assert_eq!(st["by_status"]["connected"], 0, "{st}");
}
