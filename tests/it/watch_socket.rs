//! The socket op `watch` (SPEC §10) through a real `serve`: `watching`, then one `event`
//! line per status change or refresh; a tenant caller (key or uid grant) sees only its
//! tenant; a watcher that does not read is told it `lagged` while the daemon keeps
//! answering others; no event line carries a secret. And `client::Backend::watch`, in
//! process and through the daemon, gives the same events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::fake_provider::{CLIENT_SECRET, Canned, FakeProvider};
use crate::support::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokenvault::Request;

/// Reads event lines until one satisfies `want` (a hang guard of 30 s), returning every
/// line read.
fn read_until(c: &mut Conn, want: impl Fn(&Value) -> bool) -> Vec<Value> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(30) {
        let Some(v) = c.recv() else { break };
        let done = want(&v);
        seen.push(v);
        if done {
            return seen;
        }
    }
    panic!("the wanted event never came; saw {seen:?}");
}

fn event_of(v: &Value) -> &Value {
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["kind"], "event", "{v}");
    &v["event"]
}

fn start_watch(c: &mut Conn, req: Value) {
    let v = c.call(req);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["kind"], "watching", "{v}");
}

#[test]
fn an_admin_watcher_sees_a_put_and_a_refresh_and_no_secret() {
    let fp = FakeProvider::start_background();
    fp.with(|s| s.token_prefix = "WATCHTOK-91c3-".into());
    let tv = TestVault::new();
    tv.setup(vec![
        Request::TenantAdd {
            name: "acme".into(),
        },
        crate::support::fake_provider::spotify_client_request(&fp, CLIENT_SECRET),
        Request::Put {
            connection: "acme/spotify/alice".into(),
            token: fp.new_family(),
        },
    ]);
    let d = Daemon::start(&tv, &[]);
    let mut w = d.conn();
    start_watch(&mut w, json!({"op":"watch","id":"w1"}));
    let mut c = d.conn();
    assert_eq!(
        c.code(json!({"op":"put","connection":"acme/spotify/new","token":{"access_token":"AT-watch-secret-77f1","refresh_token":"RT-watch-secret-0b2e","expires_in":3600}})),
        "ok"
    );
    let mut lines = read_until(&mut w, |v| {
        let e = event_of(v);
        e["type"] == "status" && e["connection"] == "acme/spotify/new"
    });
    let put = event_of(lines.last().unwrap());
    assert_eq!(put["to"], "connected", "{put}");
    assert!(
        put["from"].is_null(),
        "a new connection comes from nothing: {put}"
    );
    assert!(put["at"].as_i64().unwrap() > 0);
    assert_eq!(
        lines.last().unwrap()["id"],
        "w1",
        "the watch's id is echoed on each event"
    );

    // The provider revokes the grant: the refresh fails and the status changes.
    fp.script([Canned::InvalidGrant]);
    let v = c.call(json!({"op":"refresh","connection":"acme/spotify/alice"}));
    lines.push(v);
    lines.extend(read_until(&mut w, |v| {
        let e = event_of(v);
        e["connection"] == "acme/spotify/alice"
            && (e["type"] == "refreshed" || (e["type"] == "status" && e["to"] == "needs_reauth"))
    }));
    // (the refresh's own answer is in `lines` too: it must not carry a secret either)
    for l in &lines {
        let s = l.to_string();
        for secret in [
            "AT-watch-secret-77f1",
            "RT-watch-secret-0b2e",
            "WATCHTOK-91c3-",
            CLIENT_SECRET,
        ] {
            assert!(!s.contains(secret), "an event line carries a secret: {s}");
        }
    }
}

#[test]
fn a_tenant_watcher_sees_only_its_tenant() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to act as a second uid");
        return;
    }
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    // let `nobody` reach the socket (not the vault, whose directory stays 0700)
    std::fs::set_permissions(tv.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    tv.setup(vec![Request::TenantGrant {
        tenant: "globex".into(),
        uid: 65534,
    }]);
    let d = Daemon::start(&tv, &["--socket-mode", "0666"]);
    // acme through its tenant key
    let mut by_key = d.conn();
    assert_eq!(by_key.auth(&key)["ok"], true);
    start_watch(&mut by_key, json!({"op":"watch"}));
    // another tenant's filter is refused, and the connection goes on
    let mut probe = d.conn();
    assert_eq!(probe.auth(&key)["ok"], true);
    assert_eq!(
        probe.code(json!({"op":"watch","filter":"globex"})),
        "forbidden"
    );
    assert_eq!(
        probe.code(json!({"op":"watch","filter":"Not A Tenant"})),
        "bad_request"
    );
    assert_eq!(probe.code(json!({"op":"hello"})), "ok");

    let mut admin = d.conn();
    let put = |c: &mut Conn, conn: &str| {
        assert_eq!(
            c.code(json!({"op":"put","connection":conn,"token":{"access_token":"AT-x","expires_in":3600}})),
            "ok"
        );
    };
    put(&mut admin, "globex/spotify/carol");
    put(&mut admin, "acme/spotify/dave");
    let seen = read_until(&mut by_key, |v| {
        event_of(v)["connection"] == "acme/spotify/dave"
    });
    for v in &seen {
        let e = event_of(v);
        assert!(
            e["connection"].as_str().unwrap_or("").starts_with("acme/"),
            "the acme key saw another tenant's event: {e}"
        );
    }
    drop(seen);

    // globex through a uid grant: a watcher run as uid 65534
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(30)\ns.connect({:?})\ns.sendall(b'{{\"op\":\"watch\"}}\\n')\nf=s.makefile()\nfor line in f:\n    sys.stdout.write(line); sys.stdout.flush()\n    if 'globex/spotify/erin' in line: break\n",
        d.socket.display().to_string()
    );
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            &script,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait for the watcher to be in place (its `watching` line), then change things
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.contains("\"watching\""), "{first}");
    put(&mut admin, "acme/spotify/frank");
    put(&mut admin, "globex/spotify/erin");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("globex/spotify/erin"), "{rest}");
    assert!(
        !rest.contains("acme/"),
        "the globex grant saw acme's events: {rest}"
    );
    let _ = child.wait();
}

#[test]
fn a_watcher_that_never_reads_lags_and_the_daemon_keeps_answering() {
    let tv = TestVault::new();
    two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let mut w = d.conn();
    start_watch(&mut w, json!({"op":"watch"}));
    // The bus holds 1024 events and a watcher's socket a few dozen lines; each put and
    // each remove of a new connection is one event.
    let mut c = d.conn();
    for i in 0..700 {
        let conn = format!("acme/spotify/lag{i}");
        assert_eq!(
            c.code(json!({"op":"put","connection":conn,"token":{"access_token":"AT-lag","expires_in":3600}})),
            "ok"
        );
        assert_eq!(c.code(json!({"op":"remove","connection":conn})), "ok");
    }
    // the daemon answers others while the watcher is stuck
    let v = c.call(json!({"op":"get","connection":"acme/spotify/alice"}));
    assert_eq!(v["token"], "AT-acme-alice", "{v}");
    let seen = read_until(&mut w, |v| event_of(v)["type"] == "lagged");
    let missed = event_of(seen.last().unwrap())["missed"].as_u64().unwrap();
    assert!(missed > 0, "{seen:?}");
    assert!(
        seen.len() < 1400,
        "a lagging watcher got every event anyway"
    );
    // and the watch goes on after the notice
    c.code(json!({"op":"put","connection":"acme/spotify/after","token":{"access_token":"AT-x","expires_in":3600}}));
    read_until(&mut w, |v| {
        event_of(v)["connection"] == "acme/spotify/after"
    });
}

#[test]
fn a_watch_is_exempt_from_the_idle_timeout_and_ends_with_the_daemon() {
    let tv = TestVault::new();
    two_tenants(&tv);
    tv.write_config("[daemon]\nidle_timeout_secs = 1\n");
    let mut d = Daemon::start(&tv, &[]);
    let mut w = d.conn();
    start_watch(&mut w, json!({"op":"watch"}));
    std::thread::sleep(Duration::from_millis(2500));
    let mut c = d.conn();
    c.code(json!({"op":"put","connection":"acme/spotify/late","token":{"access_token":"AT-x","expires_in":3600}}));
    read_until(&mut w, |v| event_of(v)["connection"] == "acme/spotify/late");
    drop(c);
    let (status, _) = d.stop();
    assert!(status.success());
    // events already sent (the put's `admin` event, say) may still be read; then it ends
    let mut left = 0;
    while w.recv().is_some() {
        left += 1;
        assert!(left < 16, "the watch outlived the daemon");
    }
}

/// `client::Backend::watch` in process: the engine's bus, the caller's scope, `lagged`.
#[test]
fn backend_watch_in_process_filters_by_scope() {
    use tokenvault::client::Backend;
    use tokenvault::contract::{Caller, EventKind};
    let tv = TestVault::new();
    two_tenants(&tv);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = std::sync::Arc::new(tv.engine());
        let admin = Backend::local(engine.clone(), admin());
        let acme = Backend::local(
            engine.clone(),
            Caller::Tenant {
                tenant: "acme".into(),
                actor: "test".into(),
            },
        );
        let mut all = admin.watch(None).await.unwrap();
        let mut own = acme.watch(None).await.unwrap();
        assert_eq!(
            acme.watch(Some("globex".into())).await.unwrap_err().code(),
            "forbidden"
        );
        for conn in ["globex/spotify/x", "acme/spotify/y"] {
            admin
                .call(Request::Put {
                    connection: conn.into(),
                    token: json!({"access_token":"AT-x","expires_in":3600}),
                })
                .await
                .unwrap();
        }
        let first = all.next().await.unwrap().unwrap();
        assert_eq!(first.connection(), Some("globex/spotify/x"));
        let mine = own.next().await.unwrap().unwrap();
        assert_eq!(mine.connection(), Some("acme/spotify/y"), "{mine:?}");
        // more events than the bus holds, unread: one `lagged`
        for i in 0..1100 {
            let conn = format!("acme/spotify/l{i}");
            admin
                .call(Request::Put {
                    connection: conn.clone(),
                    token: json!({"access_token":"AT-x"}),
                })
                .await
                .unwrap();
        }
        let mut lagged = None;
        while let Some(Ok(e)) = own.next().await {
            if let EventKind::Lagged { missed } = e.kind {
                lagged = Some(missed);
                break;
            }
        }
        assert!(lagged.is_some_and(|m| m > 0), "{lagged:?}");
    });
}

/// `client::Backend::watch` through a daemon: its own connection sending `watch`.
#[test]
fn backend_watch_through_the_daemon() {
    let tv = TestVault::new();
    let key = two_tenants(&tv);
    let d = Daemon::start(&tv, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let trusted: tokenvault::client::TrustedUids = std::sync::Arc::new(|| Ok(Vec::new()));
        let mut b = tokenvault::client::Daemon::connect(&d.socket, trusted).await.unwrap().unwrap();
        b.auth(tokenvault::secret::Secret::new(key.as_str())).await.unwrap();
        let b = tokenvault::client::Backend::Daemon(b);
        let mut events = b.watch(None).await.unwrap();
        // calls go on over the backend's other connection while the watch is open
        let hello = b.call(Request::Hello).await.unwrap();
        assert!(matches!(hello, tokenvault::Response::Hello { ref caller, .. } if caller == "tenant:acme"), "{hello:?}");
        let mut admin = Conn::open(&d.socket);
        for conn in ["globex/spotify/z", "acme/spotify/w"] {
            assert_eq!(
                admin.code(json!({"op":"put","connection":conn,"token":{"access_token":"AT-x","expires_in":3600}})),
                "ok"
            );
        }
        let e = tokio::time::timeout(Duration::from_secs(30), events.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(e.connection(), Some("acme/spotify/w"), "{e:?}");
    });
}
