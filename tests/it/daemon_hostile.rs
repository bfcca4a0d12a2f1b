//! SPEC §6 limits: hostile or broken clients get an error or a close; the daemon and
//! every other client carry on.

use crate::support::*;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

fn still_serving(d: &Daemon) {
    let mut c = d.conn();
    let v = c.call(json!({"op":"get","connection":"acme/spotify/alice","id":"check"}));
    assert_eq!(v["token"], "AT-acme-alice", "{v}");
    assert_eq!(v["id"], "check");
}

#[test]
fn a_line_over_64_kib_gets_an_error_and_a_close() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let mut bystander = d.conn();
    let mut c = d.conn();
    // a syntactically valid request, just too long
    let mut line = br#"{"op":"hello","pad":""#.to_vec();
    line.resize(64 * 1024 + 10, b'x');
    line.extend_from_slice(b"\"}\n");
    let _ = c.send_raw(&line);
    let v = c.recv().expect("an error line before the close");
    assert_eq!(v["error"]["code"], "bad_request");
    assert!(v["error"]["message"].as_str().unwrap().contains("64 KiB"));
    assert!(c.recv().is_none(), "connection closed");
    // exactly at the limit is still accepted (and merely malformed)
    let mut c = d.conn();
    let mut line = vec![b' '; 64 * 1024 - 15];
    line.extend_from_slice(br#"{"op":"hello"}"#);
    assert_eq!(line.len(), 64 * 1024 - 1);
    line.push(b'\n');
    c.send_raw(&line).unwrap();
    assert_eq!(c.recv().unwrap()["ok"], true);
    assert_eq!(bystander.code(json!({"op":"hello"})), "ok");
    still_serving(&d);
}

#[test]
fn malformed_json_and_unknown_ops_get_errors_and_the_connection_goes_on() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    for (raw, want) in [
        (&b"{not json\n"[..], "malformed JSON"),
        (b"\"just a string\"\n", "JSON object"),
        (b"{\"id\":5}\n", "missing \"op\""),
        (b"{\"op\":\"frobnicate\",\"id\":6}\n", "unknown op"),
        (b"{\"op\":\"get\"}\n", "missing field"),
        (b"\xff\xfe\x00garbage\n", "malformed JSON"),
        (b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n", "malformed JSON"),
    ] {
        c.send_raw(raw).unwrap();
        let v = c.recv().expect("an answer");
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{msg} lacks {want}");
    }
    // ids are echoed where readable
    c.send_raw(b"{\"op\":\"frobnicate\",\"id\":[1,2]}\n")
        .unwrap();
    assert_eq!(c.recv().unwrap()["id"], json!([1, 2]));
    // blank lines are ignored; the same connection still answers
    c.send_raw(b"\n\n").unwrap();
    let v = c.call(json!({"op":"get","connection":"acme/spotify/alice","id":9}));
    assert_eq!(v["token"], "AT-acme-alice");
    assert_eq!(v["id"], 9);
    // pipelined requests are answered in order
    c.send_raw(
        b"{\"op\":\"hello\",\"id\":1}\n{\"op\":\"nope\",\"id\":2}\n{\"op\":\"status\",\"id\":3}\n",
    )
    .unwrap();
    for want in [1, 2, 3] {
        assert_eq!(c.recv().unwrap()["id"], want);
    }
    still_serving(&d);
}

#[test]
fn connections_over_the_cap_are_refused_and_others_carry_on() {
    let tv = TestVault::new();
    two_tenants(&tv);
    // These connections are root's, i.e. admin: they may use the 2 slots kept for the
    // operator beyond max_connections, and nothing more (socket_trust has the other uids).
    tv.write_config("[daemon]\nmax_connections = 4\nreserved_admin_connections = 2\n");
    let d = Daemon::start(&tv, &[]);
    std::thread::sleep(Duration::from_millis(200)); // the start-up probe's slot is released
    let mut held: Vec<Conn> = (0..6).map(|_| d.conn()).collect();
    for c in &mut held {
        assert_eq!(c.code(json!({"op":"hello"})), "ok");
    }
    let mut extra = d.conn();
    let v = extra.recv().expect("an error line");
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many connections"),
        "{v}"
    );
    assert!(extra.recv().is_none());
    // the held ones still work
    for c in &mut held {
        assert_eq!(
            c.code(json!({"op":"get","connection":"acme/spotify/alice"})),
            "ok"
        );
    }
    // freeing one slot lets a new client in
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = d.conn();
        c.send_raw(b"{\"op\":\"hello\"}\n").unwrap();
        if c.recv().is_some_and(|v| v["ok"] == true) {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_idle_connection_is_closed_and_others_are_not() {
    let tv = TestVault::new();
    two_tenants(&tv);
    tv.write_config("[daemon]\nidle_timeout_secs = 1\n");
    let d = Daemon::start(&tv, &[]);
    let t = Instant::now();
    let mut idle = d.conn();
    let v = idle.recv().expect("an idle notice");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("idle"),
        "{v}"
    );
    assert!(idle.recv().is_none());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // a busy connection is not idle: 3 requests spaced 0.5 s apart survive past 1 s
    let mut busy = d.conn();
    for _ in 0..3 {
        assert_eq!(busy.code(json!({"op":"hello"})), "ok");
        std::thread::sleep(Duration::from_millis(500));
    }
    // a slow-loris that trickles a line without finishing it is idle too
    let mut slow = d.conn();
    let t = Instant::now();
    for b in br#"{"op":"hel"#.iter() {
        if slow.send_raw(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let v = slow.recv();
    assert!(v.is_none_or(|v| v["ok"] == false));
    assert!(t.elapsed() < Duration::from_secs(10));
    still_serving(&d);
}

/// The idle timer is one per connection and fires while a line may be half read; the
/// bytes already read must survive it (the read goes on, nothing is dropped).
#[test]
fn a_line_straddling_the_idle_timer_is_answered_whole() {
    let tv = TestVault::new();
    two_tenants(&tv);
    tv.write_config("[daemon]\nidle_timeout_secs = 2\n");
    let d = Daemon::start(&tv, &[]);
    let mut c = d.conn();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.code(json!({"op":"hello"})), "ok");
    // the connection's timer fires 2 s after it opened, between these two halves
    std::thread::sleep(Duration::from_millis(800));
    c.send_raw(br#"{"op":"hel"#).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    c.send_raw(b"lo\",\"id\":7}\n").unwrap();
    let v = c.recv().expect("an answer");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["id"], 7, "{v}");
}

#[test]
fn clients_that_vanish_mid_request_do_not_disturb_the_daemon() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    for _ in 0..20 {
        // half a request, then gone
        let mut c = d.conn();
        c.send_raw(br#"{"op":"get","connection":"acme/spo"#)
            .unwrap();
        drop(c);
        // a full request, gone before the answer
        let mut c = d.conn();
        c.send_raw(b"{\"op\":\"get\",\"connection\":\"acme/spotify/alice\"}\n")
            .unwrap();
        c.stream.shutdown(std::net::Shutdown::Both).unwrap();
        drop(c);
        // a big request cut off mid-way
        let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        let _ = s.write_all(&vec![b'{'; 30_000]);
        drop(s);
    }
    still_serving(&d);
    assert!(!d.log().contains("panicked"));
}
