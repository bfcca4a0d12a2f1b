//! One local user cannot lock the others out (SPEC §6 limits): a uid
//! with no grant and no key is capped per uid, must authenticate within the auth
//! deadline, and, with every other ungranted uid, holds at most half the slots; root and
//! granted uids still get in. The socket is widened (`--socket-mode 0666`) as an operator
//! would to let other users in; the other uids are real processes (`other_uid`).

use crate::support::other_uid::{self, NOBODY, chmod, holder, is_cap_refusal};
use crate::support::*;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::time::Duration;

/// A uid granted to tenant acme.
const TENANT_UID: u32 = 4242;
/// A second uid with no grant.
const STRANGER: u32 = 4343;
const WAIT: Duration = Duration::from_secs(60);

fn widened_daemon(tv: &TestVault, config: &str) -> Daemon {
    chmod(tv.dir.path(), 0o711);
    tv.write_config(config);
    let d = Daemon::start(tv, &["--socket-mode", "0666"]);
    tv.daemon_cmd()
        .args(["tenant", "grant", "acme", "--uid", &TENANT_UID.to_string()])
        .assert()
        .success();
    // the start-up probe's slot is released
    std::thread::sleep(Duration::from_millis(200));
    d
}

/// The first answer of each connection a holder opened.
fn first_answers(opened: &Value) -> Vec<Value> {
    opened
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["answers"][0].clone())
        .collect()
}

/// `get` as `uid` through the real binary.
fn get_as(tv: &TestVault, uid: u32, connection: &str) -> std::process::Output {
    let mut c = tv.std_cmd();
    c.env_remove("TOKENVAULT_PASSPHRASE_FILE")
        .env("HOME", "/nonexistent")
        .args(["get", connection])
        .uid(uid)
        .gid(uid);
    let mut c = assert_cmd::Command::from_std(c);
    c.timeout(WAIT).output().unwrap()
}

fn assert_root_and_tenant_served(tv: &TestVault) {
    tv.daemon_cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success()
        .stdout("AT-acme-alice\n");
    let out = tv.daemon_cmd().args(["list", "--json"]).assert().success();
    let list: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let out = get_as(tv, TENANT_UID, "acme/spotify/alice");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "AT-acme-alice\n");
}

#[test]
fn an_ungranted_uid_is_capped_and_cannot_crowd_out_root_or_a_granted_uid() {
    if !other_uid::can_switch_uid() {
        return;
    }
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = widened_daemon(
        &tv,
        "[daemon]\nmax_connections = 32\nmax_connections_per_uid = 4\nauth_timeout_secs = 60\n",
    );
    let hello = [json!({"op":"hello"})];
    let mut flood = holder(NOBODY, tv.dir.path(), &d.socket, 12, &hello, None);
    let answers = first_answers(&flood.wait_json("opened.json", WAIT));
    let held = answers
        .iter()
        .filter(|v| v["ok"] == true && v["caller"] == "unauthorized")
        .count();
    let refused: Vec<&Value> = answers.iter().filter(|v| is_cap_refusal(v)).collect();
    assert_eq!((held, refused.len()), (4, 8), "{answers:?}");
    for r in &refused {
        let m = r["error"]["message"].as_str().unwrap();
        assert!(m.contains("uid 65534") && m.contains("per uid"), "{m}");
    }

    // while the flood holds its connections, root and the granted uid are served
    assert_root_and_tenant_served(&tv);
    // the granted uid has its own cap of 4, untouched by the flood
    let mut tenant = holder(
        TENANT_UID,
        tv.dir.path(),
        &d.socket,
        4,
        &[json!({"op":"list"})],
        None,
    );
    for a in first_answers(&tenant.wait_json("opened.json", WAIT)) {
        assert_eq!(a["ok"], true, "{a}");
        assert_eq!(a["connections"].as_array().map(Vec::len), Some(1), "{a}");
    }
    // and the flood is still held: one more from nobody is still refused
    let mut more = holder(NOBODY, tv.dir.path(), &d.socket, 1, &hello, None);
    let a = first_answers(&more.wait_json("opened.json", WAIT));
    assert!(is_cap_refusal(&a[0]), "{a:?}");
    drop((flood, tenant, more));
}

#[test]
fn ungranted_uids_together_hold_at_most_half_the_slots_and_admins_keep_a_reserve() {
    if !other_uid::can_switch_uid() {
        return;
    }
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = widened_daemon(
        &tv,
        "[daemon]\nmax_connections = 8\nmax_connections_per_uid = 4\nauth_timeout_secs = 60\nreserved_admin_connections = 4\n",
    );
    let hello = [json!({"op":"hello"})];
    let mut a = holder(NOBODY, tv.dir.path(), &d.socket, 4, &hello, None);
    for v in first_answers(&a.wait_json("opened.json", WAIT)) {
        assert_eq!(v["ok"], true, "{v}");
    }
    // a second ungranted uid finds the pending half (4 of 8) taken
    let mut b = holder(STRANGER, tv.dir.path(), &d.socket, 2, &hello, None);
    for v in first_answers(&b.wait_json("opened.json", WAIT)) {
        assert!(is_cap_refusal(&v), "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("waiting to authenticate"), "{m}");
    }
    // the other half is the granted uid's
    let mut t = holder(
        TENANT_UID,
        tv.dir.path(),
        &d.socket,
        4,
        &[json!({"op":"list"})],
        None,
    );
    for v in first_answers(&t.wait_json("opened.json", WAIT)) {
        assert_eq!(v["ok"], true, "{v}");
    }
    // all 8 slots are in use now; root still gets in through its reserve
    tv.daemon_cmd()
        .args(["get", "acme/spotify/alice"])
        .assert()
        .success()
        .stdout("AT-acme-alice\n");
    // while a granted uid with no connection yet meets the overall cap, told so
    tv.daemon_cmd()
        .args(["tenant", "grant", "globex", "--uid", "4444"])
        .assert()
        .success();
    let out = get_as(&tv, 4444, "globex/spotify/bob");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("too many connections (limit 8)"),
        "{}",
        stderr(&out)
    );
    drop((a, b, t));
}

#[test]
fn an_unauthorised_connection_is_closed_at_the_auth_deadline() {
    if !other_uid::can_switch_uid() {
        return;
    }
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    let d = widened_daemon(
        &tv,
        "[daemon]\nauth_timeout_secs = 1\nidle_timeout_secs = 60\nmax_connections_per_uid = 3\n",
    );
    let hello = [json!({"op":"hello"})];
    // three idle connections of a uid with no grant: one `unauthorized` line, then closed
    let mut idle = holder(NOBODY, tv.dir.path(), &d.socket, 3, &hello, Some(20));
    for v in first_answers(&idle.wait_json("opened.json", WAIT)) {
        assert_eq!(v["ok"], true, "hello is answered before the deadline: {v}");
    }
    let waited = idle.wait_json("waited.json", WAIT);
    for w in waited.as_array().unwrap() {
        assert_eq!(w["closed"], true, "{w}");
        assert_eq!(w["line"]["error"]["code"], "unauthorized", "{w}");
        let m = w["line"]["error"]["message"].as_str().unwrap();
        assert!(m.contains("within 1 s") && m.contains("auth"), "{m}");
    }
    // their slots are free again: the same uid opens its 3 once more
    let mut again = holder(NOBODY, tv.dir.path(), &d.socket, 3, &hello, None);
    for v in first_answers(&again.wait_json("opened.json", WAIT)) {
        assert_eq!(v["ok"], true, "{v}");
    }
    drop(again);

    // a connection that authenticated with a key, and one of a granted uid, stay open
    let mut keyed = holder(
        STRANGER,
        tv.dir.path(),
        &d.socket,
        2,
        &[json!({"op":"auth","tenant_key":key})],
        Some(4),
    );
    let mut granted = holder(
        TENANT_UID,
        tv.dir.path(),
        &d.socket,
        1,
        &[json!({"op":"list"})],
        Some(4),
    );
    for v in first_answers(&keyed.wait_json("opened.json", WAIT)) {
        assert_eq!(v["ok"], true, "{v}");
    }
    for v in first_answers(&granted.wait_json("opened.json", WAIT)) {
        assert_eq!(v["ok"], true, "{v}");
    }
    for h in [&mut keyed, &mut granted] {
        let waited = h.wait_json("waited.json", WAIT);
        for w in waited.as_array().unwrap() {
            assert_eq!(w["closed"], false, "closed after authenticating: {w}");
        }
    }
    // a refused key does not help: closed at the deadline like no key at all
    let mut bad = holder(
        STRANGER,
        tv.dir.path(),
        &d.socket,
        1,
        &[json!({"op":"auth","tenant_key":"tvk_0000000000000000_wrong"})],
        Some(20),
    );
    let a = first_answers(&bad.wait_json("opened.json", WAIT));
    assert_eq!(a[0]["error"]["code"], "unauthorized", "{a:?}");
    let w = &bad.wait_json("waited.json", WAIT)[0];
    assert_eq!(w["closed"], true, "{w}");
    assert_eq!(w["line"]["error"]["code"], "unauthorized", "{w}");
    drop((idle, keyed, granted, bad));
}
