//! Frames on ratatui's `TestBackend` at 80×24 and 120×40, fixed clock and data, compared
//! with the committed snapshots (`snapshots/*.snap`; review changes with `cargo insta
//! review`, or `INSTA_UPDATE=always` then `git diff`). Also: `NO_COLOR` draws no colour,
//! and no frame ever shows a secret.

use super::*;
use crate::tui::view;
use Key::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

fn terminal(app: &App) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(app.width, app.height)).unwrap();
    t.draw(|f| view::draw(f, app)).unwrap();
    t
}

pub fn frame(app: &App) -> String {
    terminal(app).backend().to_string()
}

/// Every screen the snapshots cover: (name, keys from the loaded start).
fn screens() -> Vec<(&'static str, Vec<Key>)> {
    vec![
        ("connections", vec![Char('j'), Char('j')]),
        (
            "connections_filtered",
            [vec![Char('/')], typed("spotify"), vec![Enter]].concat(),
        ),
        (
            "connections_status_filter",
            vec![Char('s'), Char('s'), Char('s'), Char('s')],
        ),
        (
            "filter_prompt",
            [vec![Char('/')], typed("acme/sp")].concat(),
        ),
        (
            "connection_details",
            vec![Char('j'), Char('j'), Char('j'), Enter],
        ),
        ("confirm_remove", vec![Char('j'), Char('d')]),
        ("apple_keys", vec![Char('2'), Char('j')]),
        ("apple_key_details", vec![Char('2'), Char('j'), Enter]),
        ("apple_token_renewed", vec![Char('2'), Char('r')]),
        (
            "add_key_prompt",
            [vec![Char('2'), Char('a')], typed("TEAM000002")].concat(),
        ),
        (
            "confirm_activate",
            vec![Char('2'), Char('j'), Char('j'), Char('A')],
        ),
        (
            "confirm_retire_active",
            vec![Char('2'), Char('j'), Char('x'), Char('y')],
        ),
        ("backups", vec![Char('3')]),
        ("export_prompt", vec![Char('3'), Char('e')]),
        (
            "backup_report",
            vec![Char('3'), Char('e'), Enter, Enter, Enter],
        ),
        (
            "backups_after_export",
            vec![Char('3'), Char('e'), Enter, Enter, Enter, Esc],
        ),
        (
            "verify_prompt",
            [
                vec![Char('3'), Char('v'), Tab],
                typed("/home/op/age-identity.txt"),
            ]
            .concat(),
        ),
        ("audit", vec![Char('4')]),
        ("help", vec![Char('?')]),
    ]
}

fn screen(w: u16, h: u16, keys: &[Key]) -> App {
    let (mut app, mut fake) = loaded(w, h);
    press_settle(&mut app, &mut fake, keys);
    app
}

#[test]
fn every_screen_at_80x24_and_120x40() {
    for (w, h) in [(80, 24), (120, 40)] {
        for (name, keys) in screens() {
            let app = screen(w, h, &keys);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), frame(&app));
        }
    }
}

#[test]
fn an_error_in_the_footer() {
    for (w, h) in [(80, 24), (120, 40)] {
        let (mut app, mut fake) = loaded(w, h);
        fake.fail = Some((
            "refresh",
            "error: provider unavailable: spotify answered 503 Service Unavailable; the token is still valid until 2026-09-21T14:23:20Z, retry later (`tokenvault refresh acme/discord/bot`)".into(),
        ));
        press_settle(&mut app, &mut fake, &[Char('r')]);
        insta::assert_snapshot!(format!("error_footer_{w}x{h}"), frame(&app));
    }
}

#[test]
fn export_progress_gauge() {
    for (w, h) in [(80, 24), (120, 40)] {
        let (mut app, _) = loaded(w, h);
        // the export's effect is not carried out: it stays running
        press(&mut app, &[Char('3'), Char('e'), Enter, Enter, Enter]);
        app.update(Action::Progress {
            done: 420,
            total: 1000,
        });
        insta::assert_snapshot!(format!("export_progress_{w}x{h}"), frame(&app));
    }
}

#[test]
fn countdowns_tick_with_the_clock() {
    let (mut app, _) = loaded(120, 40);
    let before = frame(&app);
    assert!(before.contains("14:13:20 UTC"), "{before}");
    assert!(before.contains("50m00s"), "alice's token: {before}");
    app.update(Action::Tick(NOW + 61));
    let after = frame(&app);
    assert!(
        after.contains("14:14:21 UTC") && after.contains("48m59s"),
        "{after}"
    );
    // a connected token whose time ran out shows token_expired, not connected
    app.update(Action::Tick(NOW + 3001));
    let later = frame(&app);
    let alice = later
        .lines()
        .find(|l| l.contains("acme/spotify/alice"))
        .unwrap();
    assert!(
        alice.contains("token_expired") && alice.contains("expired"),
        "{alice}"
    );
}

#[test]
fn resize_redraws_at_the_new_size() {
    let (mut app, _) = loaded(120, 40);
    app.update(Action::Resize {
        width: 80,
        height: 24,
    });
    let f = frame(&app);
    assert_eq!(f.lines().count(), 24);
    assert_eq!(
        f.lines().next().unwrap().chars().count(),
        82,
        "80 columns and quotes"
    );
    // the selection stays on screen after shrinking
    let (mut app, mut fake) = loaded(120, 40);
    app.update(Action::Resize {
        width: 120,
        height: 12,
    });
    press_settle(&mut app, &mut fake, &[Char('G')]);
    assert!(frame(&app).contains("beta/spotify/dave"));
}

fn colours(t: &Terminal<TestBackend>) -> usize {
    t.backend()
        .buffer()
        .content()
        .iter()
        .filter(|c| {
            c.fg != Color::Reset || c.bg != Color::Reset || c.underline_color != Color::Reset
        })
        .count()
}

#[test]
fn no_color_draws_words_and_no_colour() {
    for (name, keys) in screens() {
        let mut coloured = screen(120, 40, &keys);
        let mut plain = screen(120, 40, &keys);
        plain.color = false;
        coloured.color = true;
        let (tc, tp) = (terminal(&coloured), terminal(&plain));
        assert_eq!(colours(&tp), 0, "{name}: NO_COLOR drew a colour");
        // same words either way: colour is decoration only
        assert_eq!(tc.backend().to_string(), tp.backend().to_string(), "{name}");
        if name == "connections" {
            assert!(colours(&tc) > 0, "with colour on, statuses are coloured");
        }
    }
    // the selection is still visible without colour (reverse video)
    let mut plain = screen(120, 40, &[Char('j')]);
    plain.color = false;
    let t = terminal(&plain);
    let buf = t.backend().buffer();
    let row = (0..buf.area.height)
        .find(|y| {
            let line: String = (0..buf.area.width).map(|x| buf[(x, *y)].symbol()).collect();
            line.contains("acme/github/ci")
        })
        .unwrap();
    assert!(
        buf[(5, row)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED),
        "the selected row is drawn reversed"
    );
}

#[test]
fn no_frame_shows_a_secret() {
    for (w, h) in [(80, 24), (120, 40)] {
        for (name, keys) in screens() {
            let f = frame(&screen(w, h, &keys));
            for s in SECRETS {
                assert!(!f.contains(s), "{name} at {w}x{h} shows {s}");
            }
        }
    }
}
