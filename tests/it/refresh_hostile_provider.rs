//! A provider answering 429 or errors cannot drive a loop, through the
//! real binary and daemon against the fake provider on 127.0.0.1: `refresh` against
//! `Retry-After: 0` forever gives exit 7 after a handful of calls and nothing follows it;
//! a `Retry-After` of 1 s or 2 minutes answers within the on-demand deadline, not minutes
//! later; a tenant's forced `get`s in a loop are held to one call per 10 s; a socket client
//! that hangs up stops its refresh, one that only half-closes still gets its answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::fake_provider::{CLIENT_SECRET, Canned, FakeProvider, spotify_client_request};
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokenvault::Request;
use tokenvault::refresh::policy::{ON_DEMAND_CALLS, ON_DEMAND_DEADLINE};

const CONN: &str = "acme/spotify/alice";
/// Slack for starting a process and opening the vault, on top of the on-demand deadline.
const SLACK: Duration = Duration::from_secs(10);

/// A vault with tenant `acme`, its spotify client aimed at `fp`, and `conns` holding
/// tokens valid for an hour (so the scheduler leaves them alone until something fails).
fn vault(fp: &FakeProvider, conns: &[&str]) -> TestVault {
    let tv = TestVault::new();
    let mut reqs = vec![
        Request::TenantAdd {
            name: "acme".into(),
        },
        spotify_client_request(fp, CLIENT_SECRET),
    ];
    for c in conns {
        reqs.push(Request::Put {
            connection: (*c).into(),
            token: fp.new_family(),
        });
    }
    tv.setup(reqs);
    tv
}

/// Runs `args`, returning (exit code, stderr, how long it took).
fn run(mut cmd: assert_cmd::Command, args: &[&str]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let out = cmd.args(args).output().unwrap();
    (out.status.code(), stderr(&out), start.elapsed())
}

#[test]
fn refresh_against_retry_after_zero_exits_7_after_three_calls_and_nothing_follows() {
    // without a daemon: the CLI opens the vault itself
    let fp = FakeProvider::start_background();
    fp.repeat([Canned::RateLimited(Some("0".into()))]);
    let tv = vault(&fp, &[CONN]);
    let (code, err, took) = run(tv.cmd(), &["refresh", CONN]);
    assert_eq!(code, Some(7), "{err}");
    assert!(took < ON_DEMAND_DEADLINE + SLACK, "{took:?}");
    assert_eq!(fp.requests(), ON_DEMAND_CALLS as u64, "{err}");
    assert!(err.contains("gave up after 3 provider calls"), "{err}");
    assert!(err.contains("try again after"), "{err}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fp.requests(), 3);

    // through a daemon: after the CLI is gone, the daemon does not go on calling
    let fp = FakeProvider::start_background();
    fp.repeat([Canned::RateLimited(Some("0".into()))]);
    let tv = vault(&fp, &[CONN]);
    let _d = Daemon::start(&tv, &[]);
    let (code, err, took) = run(tv.daemon_cmd(), &["refresh", CONN]);
    assert_eq!(code, Some(7), "{err}");
    assert!(took < ON_DEMAND_DEADLINE + SLACK, "{took:?}");
    assert!(err.contains("the scheduler will retry at"), "{err}");
    assert_eq!(fp.requests(), 3, "{err}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(fp.requests(), 3, "calls went on after the CLI exited");
    let out = tv
        .daemon_cmd()
        .args(["show", CONN, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "retrying", "{v}");
}

#[test]
fn a_retry_after_of_one_second_or_two_minutes_answers_within_the_deadline() {
    let fp = FakeProvider::start_background();
    fp.repeat([Canned::RateLimited(Some("1".into()))]);
    let tv = vault(&fp, &[CONN, "acme/spotify/bob"]);
    let (code, err, took) = run(tv.cmd(), &["refresh", CONN]);
    assert_eq!(code, Some(7), "{err}");
    assert!(
        took < ON_DEMAND_DEADLINE + SLACK,
        "took {took:?}, not minutes"
    );
    assert_eq!(fp.requests(), 3, "{err}");
    // a wait longer than the deadline is not sat out in the CLI
    fp.repeat([Canned::RateLimited(Some("120".into()))]);
    let (code, err, took) = run(tv.cmd(), &["refresh", "acme/spotify/bob"]);
    assert_eq!(code, Some(7), "{err}");
    assert!(took < ON_DEMAND_DEADLINE + SLACK, "{took:?}");
    assert!(err.contains("the provider asked us to wait 120 s"), "{err}");
    assert_eq!(fp.requests(), 4, "one call, then the answer: {err}");
}

#[test]
fn a_tenants_forced_gets_in_a_loop_are_held_to_one_call_per_ten_seconds() {
    let fp = FakeProvider::start_background();
    // every kind of answer in turn
    fp.repeat([
        Canned::RateLimited(Some("0".into())),
        Canned::Status(503),
        Canned::Hangup,
        Canned::Normal,
    ]);
    let tv = vault(&fp, &[CONN]);
    let key = match tv
        .setup(vec![Request::TenantKeyIssue {
            tenant: "acme".into(),
            label: None,
        }])
        .pop()
    {
        Some(tokenvault::Response::TenantKey { key, .. }) => key.expose().to_owned(),
        other => panic!("{other:?}"),
    };
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    assert_eq!(c.auth(&key)["ok"], true);
    let start = Instant::now();
    let mut answered = 0;
    while start.elapsed() < Duration::from_secs(12) {
        let v = c.call(json!({"op":"get","connection":CONN,"force_refresh":true}));
        // the token is valid for an hour: whatever the provider said, one is handed out
        assert_eq!(v["ok"], true, "{v}");
        answered += 1;
    }
    let elapsed = start.elapsed().as_secs();
    let calls = fp.requests();
    assert!(
        calls >= 1 && calls <= 1 + elapsed / 10,
        "{calls} provider calls for {answered} forced gets in {elapsed} s"
    );
    assert!(answered > 20, "{answered}");
}

/// Sends `refresh CONNECTION` as admin on a new socket connection.
fn send_refresh(d: &Daemon, conn: &str) -> Conn {
    let mut c = d.conn();
    let line = format!("{}\n", json!({"op":"refresh","connection":conn,"id":1}));
    c.send_raw(line.as_bytes()).unwrap();
    c
}

fn wait_for_calls(fp: &FakeProvider, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while fp.requests() < n {
        assert!(
            Instant::now() < deadline,
            "the refresh never reached the provider"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_client_that_hangs_up_stops_its_refresh_one_that_half_closes_gets_its_answer() {
    let fp = FakeProvider::start_background();
    // each answer takes a second, then says 503: a refresh left alone makes three calls
    fp.repeat([Canned::Delay(Duration::from_secs(1)), Canned::Status(503)]);
    let tv = vault(&fp, &[CONN, "acme/spotify/bob", "acme/spotify/carol"]);
    let d = Daemon::start(&tv, &[]);

    // hangs up while the first call is in flight: that call is the last
    let c = send_refresh(&d, CONN);
    wait_for_calls(&fp, 1);
    drop(c);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(fp.requests(), 1, "calls went on after the client hung up");

    // stays: its refresh runs its course (what the one above would have done)
    let before = fp.requests();
    let mut c = send_refresh(&d, "acme/spotify/bob");
    let v = c.recv().expect("an answer");
    assert_eq!(v["error"]["code"], "provider_unavailable", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("gave up after 3 provider calls"), "{msg}");
    assert!(fp.requests() >= before + 3);

    // shuts down its writing side only (as `socat` does at the end of its input): not gone
    let mut c = send_refresh(&d, "acme/spotify/carol");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let v = c
        .recv()
        .expect("a half-closed client still gets its answer");
    assert_eq!(v["id"], 1, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("gave up after 3 provider calls"), "{msg}");
}
