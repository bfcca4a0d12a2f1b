//! Drawing: one function per part of the screen (header, tabs, each tab's body, dialogs,
//! help, footer), each reading the [`App`] and writing into a ratatui `Frame`, so it works
//! on any ratatui `Backend` (the terminal, or `TestBackend` in the snapshot tests).
//!
//! Must not: change the state, do I/O, or read the clock (the App's `now` is the clock, so a
//! fixed `now` gives a fixed frame). Must not draw a secret: nothing here has one to draw.
//!
//! Colour is decoration only: every status is also written as its word, and with
//! `NO_COLOR` ([`App::color`] false) only bold/reverse/underline are used.

use super::app::{App, ConnDetails, Dialog, Field, Note, Prompt, PromptKind, Row as ConnRow, Tab};
use crate::contract::{AppleKeyView, BackupReport};
use crate::vault::records::{AuditRecord, Status};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Gauge, Paragraph, Row, Table, Tabs, Wrap};

/// Styles, with or without colour.
#[derive(Debug, Clone, Copy)]
struct Theme {
    color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn status(self, s: Status) -> Style {
        match s {
            Status::Connected => self.fg(Color::Green),
            Status::Retrying => self.fg(Color::Yellow),
            Status::TokenExpired => self.fg(Color::Magenta).add_modifier(Modifier::BOLD),
            Status::NeedsReauth | Status::Error => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Status::Disconnected => self.fg(Color::DarkGray),
        }
    }

    fn key_state(self, state: &str) -> Style {
        match state {
            "active" => self.fg(Color::Green).add_modifier(Modifier::BOLD),
            "retiring" => self.fg(Color::Yellow),
            "retired" => self.fg(Color::DarkGray),
            _ => Style::new(),
        }
    }

    fn selected(self) -> Style {
        if self.color {
            Style::new().bg(Color::Blue).fg(Color::White)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn info(self) -> Style {
        self.fg(Color::Cyan)
    }

    fn heading(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame, app: &App) {
    let t = Theme { color: app.color };
    let [header, tabs, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1 + app.note_lines()),
    ])
    .areas(f.area());
    draw_header(f, app, t, header);
    draw_tabs(f, app, t, tabs);
    match app.tab {
        Tab::Connections => draw_connections(f, app, t, body),
        Tab::AppleKeys => draw_keys(f, app, t, body),
        Tab::Backups => draw_backups(f, app, t, body),
        Tab::Audit => draw_audit(f, app, t, body),
    }
    draw_footer(f, app, t, footer);
    if let Some(d) = &app.dialog {
        draw_dialog(f, app, t, d);
    }
}

// ---- formatting ------------------------------------------------------------------------

fn utc(t: i64, fmt: &str) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format(fmt).to_string())
        .unwrap_or_else(|| t.to_string())
}

/// `2026-12-01 14:03:00`
pub fn date_time(t: i64) -> String {
    utc(t, "%Y-%m-%d %H:%M:%S")
}

fn opt_date_time(t: Option<i64>) -> String {
    t.map(date_time).unwrap_or_else(|| "-".into())
}

/// A duration as the countdowns show it: `45s`, `4m05s`, `3h04m`, `12d03h`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Time left until `t`, or `expired`/`now` once it passed.
fn countdown(t: Option<i64>, now: i64, past: &str) -> String {
    match t {
        None => "-".into(),
        Some(t) if t <= now => past.into(),
        Some(t) => span(t - now),
    }
}

/// `date (in 3h04m)` or `date (5m ago)`.
fn when(t: Option<i64>, now: i64) -> String {
    match t {
        None => "-".into(),
        Some(t) if t >= now => format!("{} (in {})", date_time(t), span(t - now)),
        Some(t) => format!("{} ({} ago)", date_time(t), span(now - t)),
    }
}

/// Keeps the end of `s` within `w` columns (`…/tokenvault.sock`).
fn tail(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        return s.to_owned();
    }
    let keep: String = s.chars().skip(n + 1 - w.max(1)).collect();
    format!("…{keep}")
}

/// `47.1 KiB`
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

// ---- header, tabs, footer ----------------------------------------------------------------

fn draw_header(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let [line1, line2] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let next = match app.status.as_ref().map(|s| s.next_due) {
        None => String::new(),
        Some(None) => "no refresh due  ".to_owned(),
        Some(Some(d)) if d <= app.now => "next refresh now  ".to_owned(),
        Some(Some(d)) => format!("next refresh in {}  ", span(d - app.now)),
    };
    let clock = format!("{next}{}", utc(app.now, "%H:%M:%S UTC"));
    let [left, right] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(clock.chars().count() as u16 + 2),
    ])
    .areas(line1);
    let fixed = "tokenvault  ".chars().count() + 2 + app.info.caller.chars().count();
    let room = usize::from(left.width).saturating_sub(fixed);
    let head = Line::from(vec![
        Span::styled("tokenvault", t.title()),
        Span::raw("  "),
        Span::raw(tail(&app.info.place, room)),
        Span::raw("  "),
        Span::styled(
            app.info.caller.clone(),
            Style::new().add_modifier(Modifier::BOLD),
        ),
    ]);
    f.render_widget(Paragraph::new(head), left);
    f.render_widget(Paragraph::new(Line::from(clock).right_aligned()), right);
    f.render_widget(
        Paragraph::new(Line::from(counts(app, t, line2.width))),
        line2,
    );
}

/// The header's second line: counts per status (as words), then, as room allows, the
/// total and the connection refreshed next.
fn counts(app: &App, t: Theme, width: u16) -> Vec<Span<'static>> {
    let width = usize::from(width);
    let Some(s) = &app.status else {
        return vec![Span::styled("reading status…", t.dim())];
    };
    let mut items: Vec<Span> = Status::ALL
        .iter()
        .filter_map(|st| {
            let n = s.by_status.get(st.as_str()).copied().unwrap_or(0);
            (n > 0).then(|| Span::styled(format!("{n} {}", st.as_str()), t.status(*st)))
        })
        .collect();
    if !app.live {
        items.insert(0, Span::styled("not live", t.error()));
    }
    let len = |items: &[Span], sep: usize| {
        items
            .iter()
            .map(|i| i.content.chars().count())
            .sum::<usize>()
            + sep * items.len().saturating_sub(1)
    };
    let total = Span::raw(format!("{} connections:", s.connections));
    let sep = if len(&items, 2) + total.content.chars().count() + 2 <= width {
        items.insert(0, total);
        2
    } else if len(&items, 2) <= width {
        2
    } else {
        1
    };
    if let Some(c) = &s.next_due_connection {
        let next = Span::styled(format!("│ next: {c}"), t.dim());
        if len(&items, sep) + sep + next.content.chars().count() <= width {
            items.push(next);
        }
    }
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(Span::raw(" ".repeat(sep)));
        }
        out.push(item);
    }
    out
}

fn draw_tabs(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let titles: Vec<Line> = Tab::ALL
        .iter()
        .map(|tab| Line::from(format!("{} {}", tab.index() + 1, tab.title())))
        .collect();
    let tabs = Tabs::new(titles)
        .select(app.tab.index())
        .highlight_style(t.selected().add_modifier(Modifier::BOLD))
        .divider("│");
    f.render_widget(tabs, area);
}

/// The keys that work here, for the footer.
fn hints(app: &App) -> &'static str {
    match &app.dialog {
        Some(Dialog::Prompt(p)) if p.fields.len() > 1 => {
            "←/→ move  Ctrl-U clear  Tab next field  Enter next / accept  Esc cancel"
        }
        Some(Dialog::Prompt(_)) => "←/→ move  Ctrl-U clear  Enter accept  Esc cancel",
        Some(Dialog::Confirm(_)) => "y yes  n no",
        Some(_) => "Esc/q close  Ctrl-C quit",
        None => match app.tab {
            Tab::Connections => {
                "/ filter  s status  Enter details  r refresh  R due  d remove  ? help  q quit"
            }
            Tab::AppleKeys => {
                "Enter details  a add  A activate  x retire  r renew token  ? help  q quit"
            }
            Tab::Backups => "e export  v verify  Enter last result  ? help  q quit",
            Tab::Audit => "j/k move  g/G first/last  Tab next tab  ? help  q quit",
        },
    }
}

fn draw_footer(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let n = app.note_lines();
    let [note, keys] = Layout::vertical([Constraint::Length(n), Constraint::Length(1)]).areas(area);
    if let Some(msg) = &app.note {
        let (text, style) = match msg {
            Note::Info(m) => (m, t.info()),
            Note::Error(m) => (m, t.error()),
        };
        f.render_widget(
            Paragraph::new(text.as_str())
                .style(style)
                .wrap(Wrap { trim: false }),
            note,
        );
    }
    f.render_widget(Paragraph::new(hints(app)).style(t.dim()), keys);
}

// ---- tabs' bodies ------------------------------------------------------------------------

/// The rows of `len` that fit in a list of `height` rows, keeping `sel` visible.
fn window(len: usize, sel: usize, top: usize, height: usize) -> (usize, usize) {
    let h = height.max(1);
    let mut top = top.min(len.saturating_sub(1));
    if sel < top {
        top = sel;
    } else if sel >= top + h {
        top = sel + 1 - h;
    }
    (top, (top + h).min(len))
}

fn body_block(title: String, t: Theme) -> Block<'static> {
    Block::bordered().title(Span::styled(title, t.title()))
}

fn draw_connections(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let c = &app.conns;
    let total = match (&app.status, c.filter.is_empty() && c.status.is_none()) {
        (Some(s), true) => s.connections.to_string(),
        _ if !c.more() => c.rows.len().to_string(),
        _ => format!("{}+", c.rows.len()),
    };
    let mut title = format!(" Connections · {} of {total}", c.rows.len());
    if !c.filter.is_empty() {
        title.push_str(&format!(" · filter \"{}\"", c.filter));
    }
    if let Some(s) = c.status {
        title.push_str(&format!(" · status {}", s.as_str()));
    }
    if c.loading {
        title.push_str(" · loading…");
    }
    title.push(' ');
    let block = body_block(title, t);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if c.rows.is_empty() {
        let msg = if !c.loaded {
            "loading…"
        } else if c.filter.is_empty() && c.status.is_none() {
            "no connections yet: add one with `tokenvault connect` or `tokenvault put`"
        } else {
            "no connection matches the filter (Esc clears it)"
        };
        f.render_widget(Paragraph::new(msg).style(t.dim()), inner);
        return;
    }
    let height = usize::from(inner.height.saturating_sub(1));
    let (top, end) = window(c.rows.len(), c.sel, c.top, height);
    let rows = c.rows[top..end].iter().enumerate().map(|(i, r)| {
        conn_row(r, app.now, t).style(if top + i == c.sel {
            t.selected()
        } else {
            Style::new()
        })
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(13),
            Constraint::Fill(3),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Fill(2),
        ],
    )
    .header(Row::new(["STATUS", "CONNECTION", "EXPIRES", "REFRESH", "REASON"]).style(t.heading()));
    f.render_widget(table, inner);
}

fn conn_row(r: &ConnRow, now: i64, t: Theme) -> Row<'static> {
    let s = r.status_at(now);
    Row::new(vec![
        Cell::from(Span::styled(s.as_str(), t.status(s))),
        Cell::from(r.connection.clone()),
        Cell::from(countdown(r.expires_at, now, "expired")),
        Cell::from(countdown(r.due_at, now, "due")),
        Cell::from(r.reason.clone().unwrap_or_default()),
    ])
}

fn draw_keys(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let k = &app.keys;
    let mut block = body_block(
        format!(
            " Apple keys · {} keys of {} tenants ",
            k.rows.len(),
            k.tenants.len()
        ),
        t,
    );
    if let Some(tok) = &k.token {
        block = block.title_bottom(Line::from(format!(
            " developer token of {}: key {}, until {} UTC ",
            tok.tenant,
            tok.key_id,
            utc(tok.expires_at, "%Y-%m-%d %H:%M")
        )));
    }
    let inner = block.inner(area);
    f.render_widget(block, area);
    if k.rows.is_empty() {
        let msg = if !k.loaded {
            "loading…"
        } else {
            "no Apple Music signing keys: `a` adds one from a .p8 file"
        };
        f.render_widget(Paragraph::new(msg).style(t.dim()), inner);
        return;
    }
    let height = usize::from(inner.height.saturating_sub(1));
    let (top, end) = window(k.rows.len(), k.sel, k.top, height);
    let rows = k.rows[top..end].iter().enumerate().map(|(i, key)| {
        Row::new(vec![
            Cell::from(key.tenant.clone()),
            Cell::from(key.key_id.clone()),
            Cell::from(key.team_id.clone()),
            Cell::from(Span::styled(key.state.clone(), t.key_state(&key.state))),
            Cell::from(utc(key.added_at, "%Y-%m-%d")),
            Cell::from(countdown(key.last_token_exp, app.now, "expired")),
        ])
        .style(if top + i == k.sel {
            t.selected()
        } else {
            Style::new()
        })
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
        ],
    )
    .header(
        Row::new([
            "TENANT",
            "KEY ID",
            "TEAM ID",
            "STATE",
            "ADDED",
            "LAST TOKEN",
        ])
        .style(t.heading()),
    );
    f.render_widget(table, inner);
}

fn draw_backups(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let b = &app.backups;
    let block = body_block(" Backups ".into(), t);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let gauge_h = if b.running.is_some() { 2 } else { 0 };
    let [top, gauge, rest] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(gauge_h),
        Constraint::Min(0),
    ])
    .areas(inner);
    let recipients = if app.info.recipients.is_empty() {
        Line::styled(
            "no [backup] recipients in the config: type age1… recipients at the prompt",
            t.dim(),
        )
    } else {
        Line::from(format!(
            "recipients from the config: {}",
            app.info.recipients.join(" ")
        ))
    };
    f.render_widget(
        Paragraph::new(vec![
            Line::from("e  export an age-encrypted backup      v  verify a backup file"),
            recipients,
        ])
        .wrap(Wrap { trim: false }),
        top,
    );
    if let Some(r) = &b.running {
        let ratio = if r.total > 0 {
            (r.done as f64 / r.total as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let [label, bar] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(gauge);
        f.render_widget(Paragraph::new(format!("{} {}…", r.action, r.path)), label);
        f.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(format!("{} / {} records", r.done, r.total))
                .gauge_style(t.fg(Color::Green).add_modifier(Modifier::REVERSED)),
            bar,
        );
    }
    let mut lines: Vec<Line> = Vec::new();
    if let Some(r) = &b.last {
        lines.push(Line::styled(format!("last {}", r.action), t.heading()));
        lines.extend(report_lines(r));
        lines.push(Line::from(""));
    }
    if !b.log.is_empty() {
        lines.push(Line::styled("backup events", t.heading()));
        lines.extend(b.log.iter().map(|l| Line::from(l.clone())));
    }
    f.render_widget(Paragraph::new(lines), rest);
}

fn report_lines(r: &BackupReport) -> Vec<Line<'static>> {
    let counts = r
        .counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = vec![
        Line::from(format!("file     {}", r.path)),
        Line::from(format!(
            "taken    {} · {}",
            date_time(r.created_at),
            r.tenant
                .as_deref()
                .map(|t| format!("tenant {t}"))
                .unwrap_or_else(|| "all tenants".into())
        )),
        Line::from(format!("records  {} ({counts})", r.records)),
        Line::from(format!("bytes    {} ({})", r.bytes, size(r.bytes))),
        Line::from(format!("sha256   {}", r.sha256)),
    ];
    out.extend(r.notes.iter().map(|n| Line::from(format!("note     {n}"))));
    out
}

fn draw_audit(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let a = &app.audit;
    let block = body_block(format!(" Audit · newest {} records ", a.records.len()), t);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if a.records.is_empty() {
        let msg = if a.loaded {
            "no audit records in the last 7 days"
        } else {
            "loading…"
        };
        f.render_widget(Paragraph::new(msg).style(t.dim()), inner);
        return;
    }
    let height = usize::from(inner.height.saturating_sub(1));
    let (top, end) = window(a.records.len(), a.sel, a.top, height);
    let rows = a.records[top..end].iter().enumerate().map(|(i, r)| {
        audit_row(r).style(if top + i == a.sel {
            t.selected()
        } else {
            Style::new()
        })
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(14),
            Constraint::Length(14),
            Constraint::Length(18),
            Constraint::Fill(3),
            Constraint::Fill(2),
        ],
    )
    .header(Row::new(["TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME"]).style(t.heading()));
    f.render_widget(table, inner);
}

fn audit_row(r: &AuditRecord) -> Row<'static> {
    let action = if r.count > 1 {
        format!("{} ×{}", r.action, r.count)
    } else {
        r.action.clone()
    };
    Row::new(vec![
        utc(r.at, "%m-%d %H:%M:%S"),
        r.actor.clone(),
        action,
        r.target.clone(),
        r.outcome.clone(),
    ])
}

// ---- dialogs -----------------------------------------------------------------------------

/// A centred rectangle of at most `w`×`h` inside `area`.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn popup(f: &mut Frame, t: Theme, area: Rect, title: &str) -> Rect {
    f.render_widget(Clear, area);
    let block = Block::bordered().title(Span::styled(format!(" {title} "), t.title()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    inner
}

fn draw_dialog(f: &mut Frame, app: &App, t: Theme, d: &Dialog) {
    let screen = f.area();
    // dialogs cover the body and leave the header and the footer's keys visible
    let room = Rect {
        y: screen.y + 2,
        height: screen.height.saturating_sub(3),
        ..screen
    };
    match d {
        Dialog::Help => {
            let inner = popup(f, t, centred(screen, 80, 24), "Keys (Esc closes)");
            f.render_widget(Paragraph::new(help_text(t)), inner);
        }
        Dialog::Connection(c) => {
            let inner = popup(f, t, centred(room, 100, 26), &c.connection);
            f.render_widget(
                Paragraph::new(details_text(c, app.now, t)).wrap(Wrap { trim: false }),
                inner,
            );
        }
        Dialog::Key(k) => {
            let inner = popup(f, t, centred(room, 70, 11), "Apple Music signing key");
            f.render_widget(Paragraph::new(key_text(k, app.now, t)), inner);
        }
        Dialog::Confirm(c) => {
            let w = 70.min(screen.width);
            let lines = (c.question.chars().count() as u16).div_ceil(w.saturating_sub(4).max(1));
            let inner = popup(f, t, centred(room, w, lines + 4), "Confirm");
            f.render_widget(
                Paragraph::new(vec![
                    Line::from(c.question.clone()),
                    Line::from(""),
                    Line::styled("y yes · n no", t.dim()),
                ])
                .wrap(Wrap { trim: false }),
                inner,
            );
        }
        Dialog::Prompt(p) => draw_prompt(f, t, room, p),
        Dialog::Backup(r) => {
            let title = if r.action == "verify" {
                "Backup verified"
            } else {
                "Backup written"
            };
            let inner = popup(f, t, centred(room, 90, 11 + r.notes.len() as u16), title);
            f.render_widget(
                Paragraph::new(report_lines(r)).wrap(Wrap { trim: false }),
                inner,
            );
        }
    }
}

/// The part of `field`'s value shown in `room` columns: from the start, or around the
/// cursor while the field is being edited; and the cursor's column in it.
fn visible(field: &Field, focused: bool, room: usize) -> (String, usize) {
    let room = room.max(1);
    let start = if focused {
        field.cursor.saturating_sub(room - 1)
    } else {
        0
    };
    let shown = field.value.chars().skip(start).take(room).collect();
    (shown, field.cursor - start.min(field.cursor))
}

fn draw_prompt(f: &mut Frame, t: Theme, room: Rect, p: &Prompt) {
    let filter = p.kind == PromptKind::Filter;
    let area = if filter {
        // the filter sits above the footer so the list stays visible while typing
        Rect {
            y: room.y + room.height.saturating_sub(3),
            height: 3.min(room.height),
            ..room
        }
    } else {
        centred(room, 90, p.fields.len() as u16 * 2 + 2)
    };
    let inner = popup(f, t, area, p.title);
    let label_w = p
        .fields
        .iter()
        .map(|x| x.label.chars().count())
        .max()
        .unwrap_or(0);
    // "> " + label + ": "
    let value_x = 2 + label_w + 2;
    let value_room = usize::from(inner.width).saturating_sub(value_x + 1);
    let mut lines = Vec::new();
    let mut cursor = None;
    for (i, field) in p.fields.iter().enumerate() {
        let focused = i == p.focus;
        let (shown, col) = visible(field, focused, value_room);
        if focused {
            cursor = Some((value_x + col, lines.len()));
        }
        lines.push(Line::from(vec![
            Span::styled(if focused { "> " } else { "  " }, t.title()),
            Span::styled(
                format!("{:>label_w$}: ", field.label),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                shown,
                if focused {
                    Style::new().add_modifier(Modifier::UNDERLINED)
                } else {
                    Style::new()
                },
            ),
        ]));
        if !filter {
            lines.push(Line::styled(
                format!("{:value_x$}{}", "", field.hint),
                t.dim(),
            ));
        }
    }
    f.render_widget(Paragraph::new(lines), inner);
    // the terminal's own cursor sits where typing goes
    if let Some((x, y)) = cursor
        && x < usize::from(inner.width)
        && y < usize::from(inner.height)
    {
        f.set_cursor_position((inner.x + x as u16, inner.y + y as u16));
    }
}

fn details_text(c: &ConnDetails, now: i64, t: Theme) -> Text<'static> {
    let Some(v) = &c.view else {
        return Text::styled("loading…", t.dim());
    };
    let kv = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(
                format!("{k:>16}  "),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(v),
        ])
    };
    let status = v.status;
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{:>16}  ", "status"),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::styled(status.as_str(), t.status(status)),
        Span::raw(format!(
            " since {} · attempts {}",
            date_time(v.status_at),
            v.attempts
        )),
    ])];
    if let Some(r) = &v.reason {
        lines.push(kv("reason", r.clone()));
    }
    lines.extend([
        kv(
            "access token",
            format!("expires {}", when(v.expires_at, now)),
        ),
        kv(
            "refresh token",
            if v.has_refresh_token {
                match v.refresh_expires_at {
                    Some(e) => format!("yes, expires {}", when(Some(e), now)),
                    None => "yes".into(),
                }
            } else {
                "no".into()
            },
        ),
        kv("next refresh", when(v.due_at, now)),
        kv(
            "last refresh",
            format!(
                "{} · {} refreshes",
                opt_date_time(v.last_refresh_at),
                v.refresh_count
            ),
        ),
        kv("scope", v.scope.clone().unwrap_or_else(|| "-".into())),
        kv(
            "token type",
            format!(
                "{} · id token {}",
                v.token_type.clone().unwrap_or_else(|| "-".into()),
                yes_no(v.has_id_token)
            ),
        ),
        kv(
            "created",
            format!(
                "{} · updated {}",
                date_time(v.created_at),
                date_time(v.updated_at)
            ),
        ),
    ]);
    if !v.metadata_keys.is_empty() {
        lines.push(kv("metadata", v.metadata_keys.join(", ")));
    }
    lines.push(Line::from(""));
    lines.push(Line::styled("recent audit", t.heading()));
    match &c.audit {
        None => lines.push(Line::styled("loading…", t.dim())),
        Some(a) if a.is_empty() => lines.push(Line::styled("nothing in the last 7 days", t.dim())),
        Some(a) => lines.extend(a.iter().map(|r| {
            Line::from(format!(
                "{}  {}  {}{}  {}",
                utc(r.at, "%m-%d %H:%M:%S"),
                r.actor,
                r.action,
                if r.count > 1 {
                    format!(" ×{}", r.count)
                } else {
                    String::new()
                },
                r.outcome
            ))
        })),
    }
    Text::from(lines)
}

fn key_text(k: &AppleKeyView, now: i64, t: Theme) -> Text<'static> {
    let kv = |name: &str, v: String| {
        Line::from(vec![
            Span::styled(
                format!("{name:>18}  "),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(v),
        ])
    };
    Text::from(vec![
        kv("tenant", k.tenant.clone()),
        kv("Key ID", k.key_id.clone()),
        kv("Team ID", k.team_id.clone()),
        Line::from(vec![
            Span::styled(
                format!("{:>18}  ", "state"),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(k.state.clone(), t.key_state(&k.state)),
        ]),
        kv("added", date_time(k.added_at)),
        kv("activated", opt_date_time(k.activated_at)),
        kv("retired", opt_date_time(k.retired_at)),
        kv("last token expires", when(k.last_token_exp, now)),
    ])
}

fn help_text(t: Theme) -> Text<'static> {
    let h = |s: &str| Line::styled(s.to_owned(), t.heading());
    let k = |keys: &str, what: &str| Line::from(format!("  {keys:<22}{what}"));
    Text::from(vec![
        h("Everywhere"),
        k("1 2 3 4 Tab Shift-Tab", "switch tab"),
        k("j k ↓ ↑ PgDn PgUp g G", "move the selection"),
        k("Enter", "details of the selection"),
        k("?", "this help"),
        k("Esc", "close a dialog, else clear the filter; never quits"),
        k(
            "q   Ctrl-C",
            "close a dialog, else quit · Ctrl-C quits anywhere",
        ),
        h("Connections"),
        k(
            "/   s",
            "filter by address or reason · cycle the status filter",
        ),
        k("r   R", "refresh the selection now · refresh every due one"),
        k("d", "remove the selection (y/n)"),
        h("Apple keys"),
        k("a   A", "add a key from a .p8 file · activate (y/n)"),
        k("x   r", "retire (y/n) · renew the developer token"),
        h("Backups"),
        k(
            "e   v",
            "export (file, recipients, tenant) · verify a backup",
        ),
        h("Prompts"),
        k("← → Backspace Ctrl-U", "edit the line; Ctrl-U clears it"),
        k(
            "Tab  Enter  Esc",
            "next field · next, or accept on the last · cancel",
        ),
        k("y   n", "answer a confirmation"),
    ])
}
