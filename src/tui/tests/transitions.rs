//! `App` transitions, table-driven: from the fixture state, keys (`prep` carried out
//! through the fake, then `keys` not carried out) → the state and the effects asked for.
//! Every key of SPEC §10 has a row; so do prompts, confirmations, Esc and q.

use super::*;
use crate::contract::{Event, EventKind};
use crate::tui::app::{Dialog, Note, PAGE, Pending, PromptKind, STATUS_EVERY_SECS, Tab};
use Key::*;

/// What each effect is, by name: the op of a call, or the effect's kind.
fn ops(fx: &[Effect]) -> Vec<&'static str> {
    fx.iter()
        .map(|f| match f {
            Effect::Call { req, .. } => req.op(),
            Effect::AddAppleKey { .. } => "add_apple_key(file)",
            Effect::Export { .. } => "export(progress)",
            Effect::Verify { .. } => "verify(file)",
            Effect::Quit => "quit",
        })
        .collect()
}

fn list_args(fx: &[Effect]) -> Vec<(Option<Status>, Option<String>, Option<String>)> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Call {
                req:
                    Request::List {
                        status,
                        contains,
                        after,
                        ..
                    },
                ..
            } => Some((*status, contains.clone(), after.clone())),
            _ => None,
        })
        .collect()
}

fn selected(app: &App) -> &str {
    &app.conns.rows[app.conns.sel].connection
}

fn prompt(app: &App) -> &crate::tui::app::Prompt {
    match &app.dialog {
        Some(Dialog::Prompt(p)) => p,
        other => panic!("no prompt open: {other:?}"),
    }
}

fn confirm_op(app: &App) -> &Pending {
    match &app.dialog {
        Some(Dialog::Confirm(c)) => &c.op,
        other => panic!("no confirmation open: {other:?}"),
    }
}

struct Case {
    name: &'static str,
    /// Pressed first, each effect carried out by the fake.
    prep: Vec<Key>,
    /// Then pressed; their effects are what `check` sees.
    keys: Vec<Key>,
    check: fn(&App, &[Effect]),
}

fn case(name: &'static str, prep: Vec<Key>, keys: Vec<Key>, check: fn(&App, &[Effect])) -> Case {
    Case {
        name,
        prep,
        keys,
        check,
    }
}

fn cat(a: &[Key], b: &[Key]) -> Vec<Key> {
    [a, b].concat()
}

#[test]
fn keys_change_state_and_ask_for_effects() {
    let cases = vec![
        // ---- tabs ----
        case(
            "2 opens Apple keys and asks for the tenants",
            vec![],
            vec![Char('2')],
            |a, fx| {
                assert_eq!(a.tab, Tab::AppleKeys);
                assert_eq!(ops(fx), ["tenant_list"]);
            },
        ),
        case(
            "3 opens Backups, asking nothing",
            vec![],
            vec![Char('3')],
            |a, fx| {
                assert_eq!(a.tab, Tab::Backups);
                assert!(fx.is_empty());
            },
        ),
        case(
            "4 opens Audit and asks for the tail",
            vec![],
            vec![Char('4')],
            |a, fx| {
                assert_eq!(a.tab, Tab::Audit);
                assert_eq!(ops(fx), ["audit"]);
            },
        ),
        case(
            "1 comes back to Connections",
            vec![Char('3')],
            vec![Char('1')],
            |a, fx| {
                assert_eq!(a.tab, Tab::Connections);
                assert!(fx.is_empty());
            },
        ),
        case(
            "Tab walks the tabs and wraps",
            vec![Tab, Tab, Tab],
            vec![Tab],
            |a, _| assert_eq!(a.tab, Tab::Connections),
        ),
        case(
            "Shift-Tab walks back and wraps",
            vec![],
            vec![BackTab],
            |a, _| assert_eq!(a.tab, Tab::Audit),
        ),
        case(
            "a loaded tab is not asked for again",
            vec![Char('2'), Char('1')],
            vec![Char('2')],
            |_, fx| assert!(fx.is_empty(), "{:?}", ops(fx)),
        ),
        // ---- movement ----
        case(
            "j and Down move down",
            vec![],
            vec![Char('j'), Down],
            |a, _| assert_eq!(a.conns.sel, 2),
        ),
        case(
            "k and Up move up, stopping at the top",
            vec![Char('j')],
            vec![Char('k'), Up, Up],
            |a, _| assert_eq!(a.conns.sel, 0),
        ),
        case(
            "G goes to the last row, g to the first",
            vec![],
            vec![Char('G')],
            |a, _| assert_eq!(selected(a), "beta/spotify/dave"),
        ),
        case(
            "g goes to the first row",
            vec![Char('G')],
            vec![Char('g')],
            |a, _| assert_eq!(a.conns.sel, 0),
        ),
        case("End and Home as G and g", vec![End], vec![Home], |a, _| {
            assert_eq!(a.conns.sel, 0)
        }),
        case(
            "PgDn stops at the last row, PgUp at the first",
            vec![],
            vec![PageDown],
            |a, _| assert_eq!(selected(a), "beta/spotify/dave"),
        ),
        case("PgUp", vec![PageDown], vec![PageUp], |a, _| {
            assert_eq!(a.conns.sel, 0)
        }),
        case(
            "movement on the Apple keys tab",
            vec![Char('2')],
            vec![Char('j'), Char('j'), Char('j')],
            |a, _| {
                assert_eq!(a.keys.sel, 2, "three keys: the selection stops at the last");
                assert_eq!(a.conns.sel, 0, "the Connections selection is its own");
            },
        ),
        // ---- filter ----
        case(
            "/ opens the filter prompt",
            vec![],
            vec![Char('/')],
            |a, fx| {
                assert_eq!(prompt(a).kind, PromptKind::Filter);
                assert!(fx.is_empty());
            },
        ),
        case(
            "each filter keystroke asks for the list with contains",
            vec![Char('/')],
            typed("bob"),
            |a, fx| {
                assert_eq!(a.conns.filter, "bob");
                let contains: Vec<_> = list_args(fx).into_iter().map(|(_, c, _)| c).collect();
                assert_eq!(
                    contains,
                    [Some("b".into()), Some("bo".into()), Some("bob".into())]
                );
            },
        ),
        case(
            "Enter keeps the filter and closes the prompt",
            cat(&[Char('/')], &typed("bob")),
            vec![Enter],
            |a, fx| {
                assert!(a.dialog.is_none());
                assert_eq!(a.conns.filter, "bob");
                assert_eq!(a.conns.rows.len(), 1);
                assert!(fx.is_empty());
            },
        ),
        case(
            "Esc in the filter prompt clears the filter",
            cat(&[Char('/')], &typed("bob")),
            vec![Esc],
            |a, fx| {
                assert!(a.dialog.is_none());
                assert_eq!(a.conns.filter, "");
                assert_eq!(list_args(fx), [(None, None, None)]);
            },
        ),
        case(
            "Esc with no dialog clears the filter",
            cat(&cat(&[Char('/')], &typed("bob")), &[Enter]),
            vec![Esc],
            |a, fx| {
                assert_eq!(a.conns.filter, "");
                assert_eq!(ops(fx), ["list"]);
                assert!(!a.quit);
            },
        ),
        case(
            "the filter matches reasons too",
            cat(&[Char('/')], &typed("503")),
            vec![Enter],
            |a, _| {
                assert_eq!(a.conns.rows.len(), 1);
                assert_eq!(selected(a), "acme/discord/bot");
            },
        ),
        case(
            "q inside a prompt is typed, not quit",
            vec![Char('/')],
            vec![Char('q')],
            |a, fx| {
                assert!(!a.quit);
                assert_eq!(prompt(a).fields[0].value, "q");
                assert_eq!(ops(fx), ["list"]);
            },
        ),
        // ---- status filter ----
        case(
            "s cycles the status filter through every status and back",
            vec![],
            vec![Char('s'); 7],
            |a, fx| {
                let statuses: Vec<_> = list_args(fx).into_iter().map(|(s, _, _)| s).collect();
                let mut want: Vec<Option<Status>> = Status::ALL.iter().copied().map(Some).collect();
                want.push(None);
                assert_eq!(statuses, want);
                assert_eq!(a.conns.status, None);
            },
        ),
        case(
            "s shows only that status",
            vec![Char('s'), Char('s')],
            vec![],
            |a, _| {
                assert_eq!(a.conns.status, Some(Status::Retrying));
                assert_eq!(a.conns.rows.len(), 1);
            },
        ),
        case(
            "Esc clears the status filter once the text filter is empty",
            vec![Char('s')],
            vec![Esc],
            |a, fx| {
                assert_eq!(a.conns.status, None);
                assert_eq!(ops(fx), ["list"]);
            },
        ),
        // ---- details ----
        case(
            "Enter shows the connection's details and its audit",
            vec![Char('j'), Char('j'), Char('j')],
            vec![Enter],
            |a, fx| {
                assert!(
                    matches!(&a.dialog, Some(Dialog::Connection(d)) if d.connection == "acme/spotify/alice")
                );
                assert_eq!(ops(fx), ["show", "audit"]);
            },
        ),
        case(
            "details fill in from the answers, audit filtered to the connection",
            vec![Char('j'), Char('j'), Char('j'), Enter],
            vec![],
            |a, _| {
                let Some(Dialog::Connection(d)) = &a.dialog else {
                    panic!("no details")
                };
                assert_eq!(
                    d.view.as_ref().map(|v| v.connection.as_str()),
                    Some("acme/spotify/alice")
                );
                let audit = d.audit.as_ref().unwrap();
                assert_eq!(audit.len(), 3);
                assert!(audit.iter().all(|r| r.target == "acme/spotify/alice"));
                assert!(audit[0].at > audit[2].at, "newest first");
            },
        ),
        case(
            "Esc closes details, never quits",
            vec![Enter],
            vec![Esc],
            |a, fx| {
                assert!(a.dialog.is_none());
                assert!(!a.quit);
                assert!(fx.is_empty());
            },
        ),
        case(
            "q closes details rather than quitting",
            vec![Enter],
            vec![Char('q')],
            |a, fx| {
                assert!(a.dialog.is_none());
                assert!(!a.quit);
                assert!(fx.is_empty());
            },
        ),
        case(
            "Enter on an Apple key shows the key",
            vec![Char('2'), Char('j')],
            vec![Enter],
            |a, _| {
                assert!(matches!(&a.dialog, Some(Dialog::Key(k)) if k.key_id == "K1AAAAAAAA"));
            },
        ),
        // ---- refresh, remove ----
        case(
            "r refreshes the selection",
            vec![Char('j')],
            vec![Char('r')],
            |a, fx| {
                assert!(
                    matches!(fx, [Effect::Call { req: Request::Refresh { connection }, .. }] if connection == "acme/github/ci")
                );
                assert!(
                    matches!(&a.note, Some(Note::Info(m)) if m.contains("refreshing acme/github/ci"))
                );
            },
        ),
        case(
            "a refresh answer updates the row",
            vec![Char('j'), Char('j'), Char('r')],
            vec![],
            |a, _| {
                assert_eq!(selected(a), "acme/google/ops@acme.example");
                assert_eq!(a.conns.rows[2].status, Status::Connected);
                assert_eq!(a.conns.rows[2].expires_at, Some(NOW + 3600));
            },
        ),
        case(
            "R refreshes every due connection",
            vec![],
            vec![Char('R')],
            |_, fx| assert_eq!(ops(fx), ["refresh_due"]),
        ),
        case(
            "d asks before removing",
            vec![],
            vec![Char('d')],
            |a, fx| {
                assert_eq!(
                    confirm_op(a),
                    &Pending::Remove {
                        connection: "acme/discord/bot".into()
                    }
                );
                assert!(fx.is_empty());
            },
        ),
        case(
            "n cancels the removal",
            vec![Char('d')],
            vec![Char('n')],
            |a, fx| {
                assert!(a.dialog.is_none());
                assert!(fx.is_empty());
                assert_eq!(a.conns.rows.len(), 8);
            },
        ),
        case(
            "Esc cancels the removal",
            vec![Char('d')],
            vec![Esc],
            |a, fx| assert!(a.dialog.is_none() && fx.is_empty() && !a.quit),
        ),
        case(
            "q cancels a confirmation, not the program",
            vec![Char('d')],
            vec![Char('q')],
            |a, fx| assert!(a.dialog.is_none() && fx.is_empty() && !a.quit),
        ),
        case(
            "other keys leave the confirmation open",
            vec![Char('d')],
            vec![Char('x'), Enter],
            |a, fx| {
                assert!(matches!(a.dialog, Some(Dialog::Confirm(_))));
                assert!(fx.is_empty());
            },
        ),
        case("y removes", vec![Char('d')], vec![Char('y')], |_, fx| {
            assert!(
                matches!(fx, [Effect::Call { req: Request::Remove { connection, revoke: false }, .. }] if connection == "acme/discord/bot")
            );
        }),
        case(
            "after the answer the row is gone",
            vec![Char('d'), Char('y')],
            vec![],
            |a, _| {
                assert_eq!(a.conns.rows.len(), 7);
                assert_eq!(selected(a), "acme/github/ci");
            },
        ),
        // ---- Apple keys ----
        case(
            "a prompts for tenant, Team ID, Key ID and .p8 path",
            vec![Char('2')],
            vec![Char('a')],
            |a, _| {
                let p = prompt(a);
                assert_eq!(p.kind, PromptKind::AddKey);
                let labels: Vec<_> = p.fields.iter().map(|f| f.label).collect();
                assert_eq!(labels, ["tenant", "Team ID", "Key ID", ".p8 file"]);
                assert_eq!(p.fields[0].value, "acme", "the selected key's tenant");
                assert_eq!(p.focus, 1);
            },
        ),
        case(
            "the add prompt sends the file's path for the loop to read",
            vec![Char('2'), Char('a')],
            [
                typed("TEAM000002"),
                vec![Enter],
                typed("K3CCCCCCCC"),
                vec![Enter],
                typed("/keys/AuthKey.p8"),
                vec![Enter],
            ]
            .concat(),
            |a, fx| {
                assert!(a.dialog.is_none());
                match fx {
                    [
                        Effect::AddAppleKey {
                            tenant,
                            team_id,
                            key_id,
                            p8_path,
                        },
                    ] => {
                        assert_eq!(
                            (
                                tenant.as_str(),
                                team_id.as_str(),
                                key_id.as_str(),
                                p8_path.as_str()
                            ),
                            ("acme", "TEAM000002", "K3CCCCCCCC", "/keys/AuthKey.p8")
                        );
                    }
                    other => panic!("{other:?}"),
                }
            },
        ),
        case(
            "an empty field keeps the prompt open with an error",
            vec![Char('2'), Char('a')],
            vec![Enter, Enter, Enter],
            |a, fx| {
                assert!(fx.is_empty());
                assert_eq!(prompt(a).focus, 1, "back on the empty Team ID");
                assert!(matches!(&a.note, Some(Note::Error(m)) if m.contains("Team ID is empty")));
            },
        ),
        case(
            "Esc cancels a prompt",
            vec![Char('2'), Char('a')],
            vec![Esc],
            |a, fx| assert!(a.dialog.is_none() && fx.is_empty() && !a.quit),
        ),
        case(
            "A on an inactive key asks, y activates",
            vec![Char('2'), Char('j'), Char('j'), Char('A')],
            vec![Char('y')],
            |_, fx| {
                assert!(
                    matches!(fx, [Effect::Call { req: Request::AppleKeyActivate { tenant, key_id }, .. }] if tenant == "acme" && key_id == "K2BBBBBBBB")
                );
            },
        ),
        case(
            "after activation the old active key shows retiring",
            vec![Char('2'), Char('j'), Char('j'), Char('A'), Char('y')],
            vec![],
            |a, _| {
                let state = |id: &str| {
                    a.keys
                        .rows
                        .iter()
                        .find(|k| k.key_id == id)
                        .unwrap()
                        .state
                        .clone()
                };
                assert_eq!(state("K2BBBBBBBB"), "active");
                assert_eq!(state("K1AAAAAAAA"), "retiring");
            },
        ),
        case(
            "A on the active key says so and asks nothing",
            vec![Char('2'), Char('j')],
            vec![Char('A')],
            |a, fx| {
                assert!(a.dialog.is_none() && fx.is_empty());
                assert!(
                    matches!(&a.note, Some(Note::Info(m)) if m.contains("already the active key"))
                );
            },
        ),
        case(
            "x on a retiring key: one y retires it",
            vec![Char('2'), Char('x')],
            vec![Char('y')],
            |_, fx| {
                assert!(
                    matches!(fx, [Effect::Call { req: Request::AppleKeyRetire { key_id, force: false, .. }, .. }] if key_id == "K0OLDOLDOL")
                );
            },
        ),
        case(
            "x on the active key: the first y asks again",
            vec![Char('2'), Char('j'), Char('x')],
            vec![Char('y')],
            |a, fx| {
                assert!(fx.is_empty());
                let Some(Dialog::Confirm(c)) = &a.dialog else {
                    panic!("no second question")
                };
                assert!(c.question.contains("ACTIVE"));
            },
        ),
        case(
            "x on the active key: the second y retires it with force",
            vec![Char('2'), Char('j'), Char('x'), Char('y')],
            vec![Char('y')],
            |_, fx| {
                assert!(
                    matches!(fx, [Effect::Call { req: Request::AppleKeyRetire { key_id, force: true, .. }, .. }] if key_id == "K1AAAAAAAA")
                );
            },
        ),
        case(
            "x on the active key: n at the second question changes nothing",
            vec![Char('2'), Char('j'), Char('x'), Char('y')],
            vec![Char('n')],
            |a, fx| assert!(fx.is_empty() && a.dialog.is_none()),
        ),
        case(
            "r on Apple keys renews the developer token",
            vec![Char('2')],
            vec![Char('r')],
            |_, fx| {
                assert!(
                    matches!(fx, [Effect::Call { req: Request::AppleToken { tenant }, .. }] if tenant == "acme")
                );
            },
        ),
        case(
            "the renewed token keeps only its expiry",
            vec![Char('2'), Char('r')],
            vec![],
            |a, _| {
                let t = a.keys.token.as_ref().unwrap();
                assert_eq!(
                    (t.key_id.as_str(), t.expires_at),
                    ("K1AAAAAAAA", NOW + 180 * 86_400)
                );
                assert!(
                    format!("{a:?}").find(SECRETS[0]).is_none(),
                    "the token is not kept"
                );
            },
        ),
        // ---- backups ----
        case(
            "e prompts with the configured recipients",
            vec![Char('3')],
            vec![Char('e')],
            |a, _| {
                let p = prompt(a);
                assert_eq!(p.kind, PromptKind::Export);
                assert_eq!(p.fields[0].value, "tokenvault-20260921-141320.age");
                assert_eq!(p.fields[1].value, info().recipients[0]);
                assert_eq!(p.fields[2].value, "", "all tenants");
            },
        ),
        case(
            "accepting the export starts it with a gauge",
            vec![Char('3'), Char('e')],
            vec![Enter, Enter, Enter],
            |a, fx| {
                match fx {
                    [
                        Effect::Export {
                            path,
                            tenant: None,
                            recipients,
                        },
                    ] => {
                        assert_eq!(path, "tokenvault-20260921-141320.age");
                        assert_eq!(recipients, &info().recipients);
                    }
                    other => panic!("{other:?}"),
                }
                assert!(a.backups.running.is_some());
            },
        ),
        case(
            "the export's report is shown and kept",
            vec![Char('3'), Char('e'), Enter, Enter, Enter],
            vec![],
            |a, _| {
                assert!(a.backups.running.is_none());
                assert!(matches!(&a.dialog, Some(Dialog::Backup(r)) if r.records == 17));
                assert_eq!(a.backups.last.as_ref().map(|r| r.bytes), Some(48_213));
            },
        ),
        case(
            "v prompts for the file and the identity",
            vec![Char('3')],
            vec![Char('v')],
            |a, _| {
                let labels: Vec<_> = prompt(a).fields.iter().map(|f| f.label).collect();
                assert_eq!(labels, ["file", "identity file"]);
            },
        ),
        case(
            "accepting verify names the identity file for the loop to read",
            vec![Char('3'), Char('v')],
            [typed("b.age"), vec![Tab], typed("id.txt"), vec![Enter]].concat(),
            |_, fx| {
                assert!(
                    matches!(fx, [Effect::Verify { path, identity_path }] if path == "b.age" && identity_path == "id.txt")
                );
            },
        ),
        // ---- help, quit ----
        case("? opens the help", vec![], vec![Char('?')], |a, _| {
            assert!(matches!(a.dialog, Some(Dialog::Help)))
        }),
        case(
            "q closes the help first",
            vec![Char('?')],
            vec![Char('q')],
            |a, fx| assert!(a.dialog.is_none() && !a.quit && fx.is_empty()),
        ),
        case("Esc closes the help", vec![Char('?')], vec![Esc], |a, _| {
            assert!(a.dialog.is_none() && !a.quit)
        }),
        case(
            "Esc with nothing open does nothing",
            vec![],
            vec![Esc, Esc],
            |a, fx| assert!(!a.quit && fx.is_empty()),
        ),
        case(
            "q quits when nothing is open",
            vec![],
            vec![Char('q')],
            |a, fx| {
                assert!(a.quit);
                assert_eq!(ops(fx), ["quit"]);
            },
        ),
        case(
            "Ctrl-C quits from a prompt",
            vec![Char('2'), Char('a')],
            vec![Ctrl('c')],
            |a, fx| {
                assert!(a.quit);
                assert_eq!(ops(fx), ["quit"]);
            },
        ),
        case(
            "Ctrl-C quits from a confirmation",
            vec![Char('d')],
            vec![Ctrl('c')],
            |a, _| assert!(a.quit),
        ),
        case(
            "a key with no meaning on this tab says so",
            vec![Char('4')],
            vec![Char('x')],
            |a, fx| {
                assert!(fx.is_empty());
                assert!(
                    matches!(&a.note, Some(Note::Info(m)) if m.contains("does nothing on the Audit tab"))
                );
            },
        ),
    ];
    for c in cases {
        let (mut app, mut fake) = loaded(120, 40);
        press_settle(&mut app, &mut fake, &c.prep);
        let fx = press(&mut app, &c.keys);
        (c.check)(&app, &fx);
        // every case: nothing quits but q and Ctrl-C
        let quits = c.keys.iter().any(|k| matches!(k, Char('q') | Ctrl('c'))) && app.quit;
        assert_eq!(app.quit, quits, "{}", c.name);
    }
}

#[test]
fn prompt_lines_edit_like_a_shell() {
    let (mut app, _) = loaded(120, 40);
    let value = |app: &App| {
        let p = prompt(app);
        (p.fields[p.focus].value.clone(), p.fields[p.focus].cursor)
    };
    press(&mut app, &[Char('3'), Char('v')]);
    let steps: Vec<(Vec<Key>, &str, usize)> = vec![
        (typed("abc"), "abc", 3),
        (vec![Left, Left], "abc", 1),
        (vec![Char('X')], "aXbc", 2),
        (vec![Backspace], "abc", 1),
        (vec![Delete], "ac", 1),
        (vec![Right, Right, Right], "ac", 2),
        (vec![Home], "ac", 0),
        (vec![Backspace], "ac", 0),
        (vec![End, Char('é')], "acé", 3),
        (vec![Ctrl('u')], "", 0),
        (typed("ü/x"), "ü/x", 3),
    ];
    for (keys, want, cursor) in steps {
        press(&mut app, &keys);
        assert_eq!(value(&app), (want.to_owned(), cursor), "after {keys:?}");
    }
    // Tab and Shift-Tab (and ↓/↑) move between fields, each keeps its own text
    press(&mut app, &[Tab]);
    assert_eq!(prompt(&app).focus, 1);
    press(&mut app, &typed("id"));
    press(&mut app, &[BackTab]);
    assert_eq!(value(&app), ("ü/x".to_owned(), 3));
    press(&mut app, &[Down]);
    assert_eq!(value(&app), ("id".to_owned(), 2));
}

#[test]
fn errors_land_in_the_footer_and_the_ui_goes_on() {
    let (mut app, mut fake) = loaded(120, 40);
    let msg = "error: the daemon refused: this caller is scoped to another tenant and cannot reach that tenant; use an admin caller or that tenant's key";
    fake.fail = Some(("refresh", msg.into()));
    press_settle(&mut app, &mut fake, &[Char('r')]);
    assert_eq!(app.note, Some(Note::Error(msg.into())));
    assert!(!app.quit);
    // the row is unchanged and the next key works as ever
    assert_eq!(app.conns.rows[0].status, Status::Retrying);
    press_settle(&mut app, &mut fake, &[Char('j')]);
    assert_eq!(app.conns.sel, 1);
    assert_eq!(app.note, None, "a key press acknowledges the message");
    // a failed export clears its gauge
    fake.fail = Some(("backup_export", "error: cannot write the backup".into()));
    press_settle(
        &mut app,
        &mut fake,
        &[Char('3'), Char('e'), Enter, Enter, Enter],
    );
    assert!(app.backups.running.is_none());
    assert!(matches!(&app.note, Some(Note::Error(m)) if m.contains("cannot write")));
    assert!(app.dialog.is_none());
}

#[test]
fn live_events_change_rows_without_a_key() {
    let (mut app, mut fake) = loaded(120, 40);
    let ev = |kind| Action::Event(Event::new(NOW + 1, kind));
    let fx = app.update(ev(EventKind::Status {
        connection: "acme/spotify/alice".into(),
        from: Some(Status::Connected),
        to: Some(Status::Retrying),
        reason: Some("the provider answered 502".into()),
    }));
    assert!(
        fx.is_empty(),
        "no request per event: the tick asks for the counts"
    );
    let alice = app
        .conns
        .rows
        .iter()
        .find(|r| r.connection == "acme/spotify/alice")
        .unwrap();
    assert_eq!(alice.status, Status::Retrying);
    assert_eq!(alice.reason.as_deref(), Some("the provider answered 502"));
    app.update(ev(EventKind::Refreshed {
        connection: "acme/spotify/alice".into(),
        ok: true,
        rotated: true,
        status: Status::Connected,
        expires_at: Some(NOW + 7200),
        due_at: Some(NOW + 6900),
    }));
    let alice = app
        .conns
        .rows
        .iter()
        .find(|r| r.connection == "acme/spotify/alice")
        .unwrap();
    assert_eq!(
        (alice.status, alice.expires_at, alice.due_at),
        (Status::Connected, Some(NOW + 7200), Some(NOW + 6900))
    );
    // a refresh that failed for good: no longer due by itself
    app.update(ev(EventKind::Refreshed {
        connection: "acme/spotify/alice".into(),
        ok: false,
        rotated: false,
        status: Status::NeedsReauth,
        expires_at: None,
        due_at: None,
    }));
    let alice = app
        .conns
        .rows
        .iter()
        .find(|r| r.connection == "acme/spotify/alice")
        .unwrap();
    assert_eq!(
        (alice.status, alice.expires_at, alice.due_at),
        (Status::NeedsReauth, Some(NOW + 7200), None)
    );
    // removed elsewhere: the row goes
    app.update(ev(EventKind::Status {
        connection: "acme/github/ci".into(),
        from: Some(Status::Connected),
        to: None,
        reason: None,
    }));
    assert!(
        app.conns
            .rows
            .iter()
            .all(|r| r.connection != "acme/github/ci")
    );
    // the next tick asks for the header counts once, however many events came
    let fx = app.update(Action::Tick(NOW + 1));
    assert_eq!(ops(&fx), ["status"]);
    fake.settle(&mut app, fx);
    // created elsewhere: the list is read again on the tick
    app.update(ev(EventKind::Status {
        connection: "acme/spotify/zoe".into(),
        from: None,
        to: Some(Status::Connected),
        reason: None,
    }));
    let fx = app.update(Action::Tick(NOW + 2));
    assert_eq!(ops(&fx), ["status", "list"]);
    // details open on a connection follow its events
    press_settle(&mut app, &mut fake, &[Char('g'), Enter]);
    let fx = app.update(ev(EventKind::Status {
        connection: "acme/discord/bot".into(),
        from: Some(Status::Retrying),
        to: Some(Status::Connected),
        reason: None,
    }));
    assert_eq!(ops(&fx), ["show", "audit"]);
    // an Apple key change elsewhere reloads that tenant's keys once the tab was opened
    press_settle(&mut app, &mut fake, &[Esc, Char('2')]);
    let fx = app.update(ev(EventKind::AppleKey {
        tenant: "acme".into(),
        key_id: "K2BBBBBBBB".into(),
        change: "activated".into(),
    }));
    assert_eq!(ops(&fx), ["apple_key_list"]);
    // a lost stream is said in the footer; the tick then polls
    app.update(Action::WatchLost("the daemon closed the connection".into()));
    assert!(matches!(&app.note, Some(Note::Error(m)) if m.contains("live updates stopped")));
    assert!(!app.quit);
}

#[test]
fn the_tick_moves_the_clock_and_refreshes_counts_now_and_then() {
    let (mut app, mut fake) = loaded(120, 40);
    for s in 1..STATUS_EVERY_SECS {
        let fx = app.update(Action::Tick(NOW + s));
        assert!(fx.is_empty(), "second {s}: {:?}", ops(&fx));
    }
    assert_eq!(app.now, NOW + STATUS_EVERY_SECS - 1);
    let fx = app.update(Action::Tick(NOW + STATUS_EVERY_SECS));
    assert_eq!(ops(&fx), ["status"]);
    fake.settle(&mut app, fx);
}

#[test]
fn a_large_list_loads_in_pages_around_the_selection() {
    let n = 5 * PAGE + 17;
    let mut fake = Fake::with(many(n));
    let mut app = App::new(info(), NOW, 120, 40);
    let fx = app.start();
    fake.settle(&mut app, fx);
    assert_eq!(app.conns.rows.len(), PAGE, "one page to open");
    assert_eq!(fake.seen.iter().filter(|o| **o == "list").count(), 1);
    // moving near the end of what is loaded asks for the next page, after the last row
    let mut asked = None;
    for _ in 0..PAGE {
        let fx = app.update(Action::Key(Down));
        if let Some((_, _, after)) = list_args(&fx).pop() {
            asked = Some((app.conns.sel, after));
            fake.settle(&mut app, fx);
            break;
        }
    }
    let (at, after) = asked.expect("no prefetch while scrolling a page");
    assert!(
        at < PAGE,
        "asked before the end of the loaded rows (at {at})"
    );
    assert_eq!(
        after.as_deref(),
        Some(many(n)[PAGE - 1].connection.as_str())
    );
    assert_eq!(app.conns.rows.len(), 2 * PAGE);
    // G follows the pages to the very end
    press_settle(&mut app, &mut fake, &[Char('G')]);
    assert_eq!(app.conns.rows.len(), n);
    assert_eq!(app.conns.sel, n - 1);
    assert!(!app.conns.more());
    // a filter keystroke starts over with one page
    press_settle(&mut app, &mut fake, &[Char('/'), Char('t'), Char('0')]);
    assert_eq!(app.conns.rows.len(), PAGE);
    assert_eq!(app.conns.sel, 0);
}

#[test]
fn answers_of_an_older_list_are_dropped() {
    let (mut app, mut fake) = loaded(120, 40);
    let old = app.update(Action::Key(Char('s'))); // connected
    let new = app.update(Action::Key(Char('s'))); // retrying
    fake.settle(&mut app, new);
    fake.settle(&mut app, old);
    assert_eq!(app.conns.status, Some(Status::Retrying));
    assert!(app.conns.rows.iter().all(|r| r.status == Status::Retrying));
    assert_eq!(app.conns.rows.len(), 1);
}
