//! The terminal UI against a real vault: an in-process engine seeded with distinctive
//! secrets (access and refresh tokens, a client secret, Apple signing keys, an age
//! identity), driven through every tab and dialog by key presses with the App's effects
//! carried out on the engine (`tui::run::settle`), each state drawn on ratatui's
//! `TestBackend` at 80×24 and 120×40. No frame may contain a secret; the frames must show
//! what the engine did (the old key `retiring`, the export's sha256).

use crate::support::{self, TestVault, admin};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::Arc;
use tokenvault::contract::{Request, Response};
use tokenvault::secret::Secret;
use tokenvault::tui::app::{Action, App, Key};
use tokenvault::tui::link::{EngineLink, Link};
use tokenvault::tui::{run, view};

const AT: &str = "AT-tui-must-never-show-5d2c9b";
const RT: &str = "RT-tui-must-never-show-81fe0a";
const CS: &str = "CS-tui-must-never-show-c0ffee";
const AT2: &str = "AT2-tui-must-never-show-77b1";

fn frame(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(f, app)).unwrap();
    t.backend().to_string()
}

async fn call(link: &EngineLink, req: Request) -> Response {
    link.call(req).await.unwrap()
}

#[tokio::test]
async fn every_screen_of_a_real_vault_and_no_secret_on_any() {
    let tv = TestVault::new();
    let engine = Arc::new(tv.engine());
    let link = EngineLink::new(
        engine.clone(),
        admin(),
        format!("vault {}", tv.path.display()),
    );
    // ---- a vault full of secrets ----
    call(
        &link,
        Request::TenantAdd {
            name: "acme".into(),
        },
    )
    .await;
    call(
        &link,
        Request::ClientSet {
            tenant: "acme".into(),
            provider: "spotify".into(),
            client_id: "client-id-acme".into(),
            client_secret: Some(Secret::new(CS)),
            token_url: Some("http://127.0.0.1:9/token".into()),
            authorization_url: None,
            device_authorization_url: None,
            revocation_url: None,
            params: Default::default(),
        },
    )
    .await;
    for (conn, at) in [("acme/spotify/alice", AT), ("acme/spotify/bob", AT2)] {
        call(
            &link,
            Request::Put {
                connection: conn.into(),
                token: serde_json::json!({
                    "access_token": at, "refresh_token": RT, "expires_in": 3600,
                    "scope": "user-read-private",
                }),
            },
        )
        .await;
    }
    let mut pem_lines = Vec::new();
    for key in [support::apple::KEY1, support::apple::KEY2] {
        let p8 = support::apple::p8(key);
        pem_lines.extend(
            p8.lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
                .map(|l| l[..16].to_owned()),
        );
        call(
            &link,
            Request::AppleKeyAdd {
                tenant: "acme".into(),
                team_id: support::apple::TEAM.into(),
                key_id: key.into(),
                p8: Secret::new(p8),
            },
        )
        .await;
    }
    let (_, identity_text, recipient) = support::backup::identity();
    let identity_file = tv.file("identity.txt", identity_text.as_bytes());
    let backup = tv.dir.path().join("tui-backup.age");

    // ---- the UI, key by key; every state drawn at both sizes ----
    let now = chrono::Utc::now().timestamp();
    let mut app = App::new(link.info(), now, 120, 40);
    let shared: Arc<dyn Link> = Arc::new(link.clone());
    let fx = app.start();
    run::settle(&mut app, &shared, fx).await;
    let mut frames: Vec<(String, String)> = Vec::new();
    let typed = |s: &str| s.chars().map(Key::Char).collect::<Vec<_>>();
    let steps: Vec<(&str, Vec<Key>)> = vec![
        ("connections", vec![]),
        ("details", vec![Key::Char('j'), Key::Enter]),
        (
            "filter",
            [vec![Key::Esc, Key::Char('/')], typed("bob")].concat(),
        ),
        ("filtered", vec![Key::Enter]),
        ("confirm remove", vec![Key::Char('d')]),
        ("apple keys", vec![Key::Char('n'), Key::Esc, Key::Char('2')]),
        ("key details", vec![Key::Enter]),
        ("developer token", vec![Key::Esc, Key::Char('r')]),
        ("confirm activate", vec![Key::Char('j'), Key::Char('A')]),
        ("activated", vec![Key::Char('y')]),
        ("add key prompt", vec![Key::Char('a')]),
        ("backups", vec![Key::Esc, Key::Char('3')]),
        (
            "export prompt",
            [
                vec![Key::Char('e'), Key::Ctrl('u')],
                typed(&backup.display().to_string()),
                vec![Key::Tab],
                typed(&recipient),
            ]
            .concat(),
        ),
        ("export report", vec![Key::Enter, Key::Enter]),
        (
            "verify prompt",
            [
                vec![Key::Esc, Key::Char('v'), Key::Tab],
                typed(&identity_file.display().to_string()),
            ]
            .concat(),
        ),
        ("verify report", vec![Key::Enter]),
        ("audit", vec![Key::Esc, Key::Char('4')]),
        ("help", vec![Key::Char('?')]),
    ];
    for (what, keys) in steps {
        for k in keys {
            let fx = app.update(Action::Key(k));
            run::settle(&mut app, &shared, fx).await;
        }
        frames.push((format!("{what} 80x24"), frame(&app, 80, 24)));
        frames.push((format!("{what} 120x40"), frame(&app, 120, 40)));
    }
    assert!(!app.quit);

    // the developer token the UI asked for (cached: the same one)
    let Response::AppleToken(tok) = call(
        &link,
        Request::AppleToken {
            tenant: "acme".into(),
        },
    )
    .await
    else {
        panic!("no developer token")
    };
    let jwt = tok.token.expose().to_owned();
    let id_line = identity_text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned();
    let mut secrets = vec![
        AT.to_owned(),
        AT2.to_owned(),
        RT.to_owned(),
        CS.to_owned(),
        id_line,
    ];
    // any 24-character run of the JWT (its signature, its claims), not only the whole token
    secrets.extend(
        jwt.as_bytes()
            .chunks(24)
            .map(|c| String::from_utf8_lossy(c).into_owned()),
    );
    secrets.extend(pem_lines);
    for (name, f) in &frames {
        for s in &secrets {
            assert!(
                !f.contains(s.as_str()),
                "the {name} frame shows a secret:\n{f}"
            );
        }
    }

    // ---- and the frames show what the engine did ----
    let get = |name: &str| &frames.iter().find(|(n, _)| n == name).unwrap().1;
    assert!(get("connections 120x40").contains("acme/spotify/alice"));
    assert!(
        get("details 120x40").contains("put"),
        "the details show its audit"
    );
    assert!(get("filtered 120x40").contains("acme/spotify/bob"));
    // below the header (which names the next connection due)
    let filtered = get("filtered 120x40");
    assert!(
        !filtered
            .lines()
            .skip(2)
            .any(|l| l.contains("acme/spotify/alice")),
        "{filtered}"
    );
    let activated = get("activated 120x40");
    let line = |key: &str| {
        activated
            .lines()
            .find(|l| l.contains(key))
            .unwrap()
            .to_owned()
    };
    assert!(line(support::apple::KEY2).contains("active"), "{activated}");
    assert!(
        line(support::apple::KEY1).contains("retiring"),
        "{activated}"
    );
    let sha = support::backup::sha256_file(&backup);
    let report = get("export report 120x40");
    assert!(report.contains("Backup written"), "{report}");
    let Some(last) = &app.backups.last else {
        panic!("no report kept")
    };
    assert!(report.contains(&last.sha256), "{report}");
    assert_ne!(sha, "", "the backup file exists");
    assert!(get("verify report 120x40").contains("Backup verified"));
    assert!(
        get("audit 120x40").contains("apple_key_activate"),
        "{}",
        get("audit 120x40")
    );
}

/// The event loop itself on a `TestBackend`: a connection removed and one created by
/// someone else show on the screen with no key pressed (live events, then the next tick),
/// Esc does not quit, `q` does.
#[tokio::test]
async fn the_loop_follows_live_events_without_a_key_and_quits_on_q() {
    let tv = TestVault::new();
    let engine = Arc::new(tv.engine());
    let link = EngineLink::new(engine.clone(), admin(), "vault test".into());
    call(
        &link,
        Request::TenantAdd {
            name: "acme".into(),
        },
    )
    .await;
    for conn in ["acme/spotify/alice", "acme/spotify/bob"] {
        call(
            &link,
            Request::Put {
                connection: conn.into(),
                token: serde_json::json!({"access_token": AT, "expires_in": 3600}),
            },
        )
        .await;
    }
    let (keys_tx, keys_rx) = tokio::sync::mpsc::unbounded_channel();
    let inputs =
        futures::stream::unfold(
            keys_rx,
            |mut rx| async move { rx.recv().await.map(|k| (k, rx)) },
        );
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let shared: Arc<dyn Link> = Arc::new(link.clone());
    let opts = run::Options { color: false };
    let ui = tokio::spawn(async move {
        let r = run::run_loop(
            &mut terminal,
            shared,
            Box::pin(inputs),
            opts,
            std::future::pending(),
        )
        .await;
        (r, terminal)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // someone else removes alice and adds carol
    call(
        &link,
        Request::Remove {
            connection: "acme/spotify/alice".into(),
            revoke: false,
        },
    )
    .await;
    call(
        &link,
        Request::Put {
            connection: "acme/spotify/carol".into(),
            token: serde_json::json!({"access_token": AT2, "expires_in": 3600}),
        },
    )
    .await;
    // a tick or two later (the loop ticks each second)
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    keys_tx
        .send(tokenvault::tui::input::Input::Key(Key::Esc))
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!ui.is_finished(), "Esc must not quit");
    keys_tx
        .send(tokenvault::tui::input::Input::Key(Key::Char('q')))
        .unwrap();
    let (result, terminal) = tokio::time::timeout(std::time::Duration::from_secs(10), ui)
        .await
        .expect("q did not end the loop")
        .unwrap();
    result.unwrap();
    let screen = terminal.backend().to_string();
    let rows: Vec<&str> = screen.lines().skip(2).collect();
    assert!(
        rows.iter().any(|l| l.contains("acme/spotify/carol")),
        "{screen}"
    );
    assert!(
        rows.iter().any(|l| l.contains("acme/spotify/bob")),
        "{screen}"
    );
    assert!(
        !rows.iter().any(|l| l.contains("acme/spotify/alice")),
        "{screen}"
    );
    assert!(!screen.contains(AT) && !screen.contains(AT2));
}
