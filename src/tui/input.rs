//! Terminal input → the App's [`Key`]s: decodes crossterm key events (presses and
//! repeats; releases are dropped) and resizes into [`Input`]. The meaning of each key is
//! decided in `app.rs`, not here.
//!
//! Must not: act on a key, or hold state.

use super::app::Key;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What the terminal told the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Key(Key),
    Resize { width: u16, height: u16 },
}

/// A crossterm key event as a [`Key`]; `None` for releases and keys the UI does not use.
pub fn key(ev: &KeyEvent) -> Option<Key> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    Some(match ev.code {
        KeyCode::Char(c) if ctrl => Key::Ctrl(c.to_ascii_lowercase()),
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab if ev.modifiers.contains(KeyModifiers::SHIFT) => Key::BackTab,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Delete => Key::Delete,
        _ => return None,
    })
}

/// A crossterm event as an [`Input`], if the UI cares about it.
pub fn input(ev: &TermEvent) -> Option<Input> {
    match ev {
        TermEvent::Key(k) => key(k).map(Input::Key),
        TermEvent::Resize(width, height) => Some(Input::Resize {
            width: *width,
            height: *height,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn keys_decode_as_the_app_expects() {
        let none = KeyModifiers::NONE;
        let cases = [
            (press(KeyCode::Char('q'), none), Some(Key::Char('q'))),
            (
                press(KeyCode::Char('G'), KeyModifiers::SHIFT),
                Some(Key::Char('G')),
            ),
            (
                press(KeyCode::Char('c'), KeyModifiers::CONTROL),
                Some(Key::Ctrl('c')),
            ),
            (
                press(KeyCode::Char('U'), KeyModifiers::CONTROL),
                Some(Key::Ctrl('u')),
            ),
            (press(KeyCode::Tab, KeyModifiers::SHIFT), Some(Key::BackTab)),
            (
                press(KeyCode::BackTab, KeyModifiers::SHIFT),
                Some(Key::BackTab),
            ),
            (press(KeyCode::PageDown, none), Some(Key::PageDown)),
            (press(KeyCode::F(5), none), None),
        ];
        for (ev, want) in cases {
            assert_eq!(key(&ev), want, "{ev:?}");
        }
        let mut release = press(KeyCode::Char('q'), none);
        release.kind = KeyEventKind::Release;
        assert_eq!(key(&release), None);
        assert_eq!(
            input(&TermEvent::Resize(80, 24)),
            Some(Input::Resize {
                width: 80,
                height: 24
            })
        );
    }
}
