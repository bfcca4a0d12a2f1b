//! The terminal UI's state: [`App`], the [`Action`]s that change it and the [`Effect`]s it
//! asks the event loop to carry out (the gitui / ratatui-template model). Pure: no I/O, no
//! clock, no terminal. The loop (`run.rs`) feeds it keys, answers, live events and one
//! tick a second, and executes what [`App::update`] returns through the `Link`; the tests
//! drive it the same way with no terminal at all.
//!
//! Every key of SPEC §10 is decided here, in [`App::update`] → `key`; the drawing
//! (`view.rs`) only reads the state.
//!
//! Must not: hold a secret. Requests that would carry one (the `.p8` of `apple key add`,
//! the identity of `backup verify`) leave as effects naming the file, and the loop reads the
//! file and sends the request. Answers that carry one (`apple token`) are reduced to their
//! expiry on arrival and dropped. Must not bypass the caller's scope: everything goes out
//! as a `Request` the CLI could send.
//!
//! Lists of connections are pages (`list` with `limit`/`after`/`contains`/`status`): the
//! first page is on screen as soon as it arrives and the next one is asked for while the
//! selection is still [`PREFETCH`] rows from the end of what is loaded, so 100 000
//! connections open at once and scroll without waiting. Only a compact [`Row`] is kept per
//! connection.

use crate::contract::{
    AppleKeyView, BackupReport, ConnectionView, Event, EventKind, RefreshResult, Request, Response,
    StatusView,
};
use crate::vault::records::{AuditRecord, Status};

/// Connections asked for per `list` request.
pub const PAGE: usize = 200;
/// Ask for the next page while the selection is this close to the end of what is loaded.
pub const PREFETCH: usize = 150;
/// How far back the Audit tab and a connection's details look.
pub const AUDIT_WINDOW_SECS: i64 = 7 * 86_400;
/// Newest audit records kept for the Audit tab.
pub const AUDIT_TAIL: usize = 500;
/// Audit records shown in a connection's details.
pub const DETAIL_AUDIT: usize = 8;
/// Header counts are asked for again at least this often (events also ask, once a tick).
pub const STATUS_EVERY_SECS: i64 = 15;

/// What the link says about itself, for the header and the export prompt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkInfo {
    /// `daemon /run/user/1000/tokenvault/tokenvault.sock` or `vault /home/me/vault.redb`.
    pub place: String,
    /// `admin` or `tenant acme`.
    pub caller: String,
    /// The tenant a tenant-scoped caller is limited to.
    pub tenant: Option<String>,
    /// `[backup] recipients` of the configuration: the export prompt's default.
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Connections,
    AppleKeys,
    Backups,
    Audit,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Connections, Tab::AppleKeys, Tab::Backups, Tab::Audit];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Connections => "Connections",
            Tab::AppleKeys => "Apple keys",
            Tab::Backups => "Backups",
            Tab::Audit => "Audit",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Tab::Connections => 0,
            Tab::AppleKeys => 1,
            Tab::Backups => 2,
            Tab::Audit => 3,
        }
    }

    fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % 4]
    }

    fn prev(self) -> Tab {
        Tab::ALL[(self.index() + 3) % 4]
    }
}

/// A key press, already decoded from the terminal (`input.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    /// A control chord: `Ctrl('c')`, `Ctrl('u')`.
    Ctrl(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Backspace,
    Delete,
}

/// Everything that can happen to the App.
// An action is moved once, from the loop into `update`: boxing the answer would only add
// an allocation per answer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action {
    Key(Key),
    /// One second passed; `now` in Unix seconds (the countdowns' clock).
    Tick(i64),
    Resize {
        width: u16,
        height: u16,
    },
    /// The answer to an [`Effect`]; errors arrive as the words the CLI would print.
    Answer {
        tag: Tag,
        result: std::result::Result<Response, String>,
    },
    /// A live event (from `watch`, or the local bus).
    Event(Event),
    /// Export progress: records written of `total`.
    Progress {
        done: u64,
        total: u64,
    },
    /// The live event stream failed or ended: the UI goes on, refreshing on its tick.
    WatchLost(String),
}

/// What an answer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    Status,
    /// A page of the connections list of generation `round` (older generations are dropped).
    Page {
        round: u64,
    },
    Show {
        connection: String,
    },
    ShowAudit {
        connection: String,
    },
    Tenants {
        round: u64,
    },
    AppleKeys {
        round: u64,
        tenant: String,
    },
    /// A change asked for by a key (refresh, remove, add, activate, retire).
    Change(Change),
    AppleToken {
        tenant: String,
    },
    /// The report of an export or a verify.
    Backup,
    Audit,
}

/// Which change an answer belongs to (what to update when it arrives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Refresh,
    RefreshDue,
    Remove { connection: String },
    AppleKey { tenant: String },
}

/// What the loop must do for the App.
#[derive(Debug)]
pub enum Effect {
    /// Send `req`; answer with `Action::Answer { tag, .. }`.
    Call {
        tag: Tag,
        req: Request,
    },
    /// `apple key add`: the loop reads the `.p8` at `p8_path` and sends `AppleKeyAdd`
    /// (`Tag::Change(Change::AppleKey)`).
    AddAppleKey {
        tenant: String,
        team_id: String,
        key_id: String,
        p8_path: String,
    },
    /// `backup export` to `path` (a relative path is the loop's working directory), with
    /// `Action::Progress` while it runs and `Tag::Backup` at the end.
    Export {
        path: String,
        tenant: Option<String>,
        recipients: Vec<String>,
    },
    /// `backup verify`: the loop reads the identity file and sends `BackupVerify`
    /// (`Tag::Backup`).
    Verify {
        path: String,
        identity_path: String,
    },
    Quit,
}

/// One connection as the list shows it: the fields of its row, nothing else (100 000 of
/// them stay small).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub connection: String,
    pub status: Status,
    pub reason: Option<String>,
    pub expires_at: Option<i64>,
    pub due_at: Option<i64>,
}

impl From<ConnectionView> for Row {
    fn from(v: ConnectionView) -> Row {
        Row {
            connection: v.connection,
            status: v.status,
            reason: v.reason,
            expires_at: v.expires_at,
            due_at: v.due_at,
        }
    }
}

impl Row {
    /// The status as of `now`: a `connected` token that has expired since the list was
    /// read shows as `token_expired`, as `list` would show it now.
    pub fn status_at(&self, now: i64) -> Status {
        match (self.status, self.expires_at) {
            (Status::Connected, Some(exp)) if exp <= now => Status::TokenExpired,
            (s, _) => s,
        }
    }
}

/// The Connections tab.
#[derive(Debug, Default)]
pub struct Connections {
    pub rows: Vec<Row>,
    pub sel: usize,
    /// First row on screen.
    pub top: usize,
    /// The substring filter (`/`), sent as `contains`.
    pub filter: String,
    /// The status filter (`s`).
    pub status: Option<Status>,
    /// Bumped by every reload; answers of older generations are dropped.
    pub round: u64,
    /// A page request is in flight.
    pub loading: bool,
    /// The next page arriving replaces `rows` (a reload keeps the old rows on screen
    /// until then).
    replace: bool,
    /// Where the next page starts (`after`); `None` once the last page arrived.
    pub next: Option<String>,
    /// At least one page of this generation arrived.
    pub loaded: bool,
    /// `G` was pressed: keep loading and keep the selection on the last row.
    to_end: bool,
    /// Connections were added or events were missed: reload on the next tick.
    stale: bool,
}

impl Connections {
    /// More pages exist beyond what is loaded.
    pub fn more(&self) -> bool {
        !self.loaded || self.next.is_some()
    }
}

/// The developer token's expiry after `r` on the Apple keys tab (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub tenant: String,
    pub key_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// The Apple keys tab: every key of every tenant the caller can see.
#[derive(Debug, Default)]
pub struct AppleKeys {
    pub rows: Vec<AppleKeyView>,
    pub sel: usize,
    pub top: usize,
    pub tenants: Vec<String>,
    pub round: u64,
    pub loaded: bool,
    pub token: Option<TokenInfo>,
}

/// An export in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub action: &'static str,
    pub path: String,
    pub done: u64,
    pub total: u64,
}

/// The Backups tab.
#[derive(Debug, Default)]
pub struct Backups {
    pub running: Option<Running>,
    pub last: Option<BackupReport>,
    /// Backup events seen while open (scheduled ones too), newest first.
    pub log: Vec<String>,
}

/// The Audit tab: the newest records first.
#[derive(Debug, Default)]
pub struct AuditTail {
    pub records: Vec<AuditRecord>,
    pub sel: usize,
    pub top: usize,
    pub loaded: bool,
    loading: bool,
    stale: bool,
}

/// A modal over the tab.
#[derive(Debug)]
pub enum Dialog {
    Help,
    Connection(Box<ConnDetails>),
    Key(AppleKeyView),
    Confirm(Confirm),
    Prompt(Prompt),
    /// The report of an export or a verify.
    Backup(Box<BackupReport>),
}

#[derive(Debug)]
pub struct ConnDetails {
    pub connection: String,
    pub view: Option<ConnectionView>,
    /// This connection's recent audit records, newest first (`None` until they arrive).
    pub audit: Option<Vec<AuditRecord>>,
}

/// A `y`/`n` question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub question: String,
    pub op: Pending,
    /// Asked after a first `y` (retiring the active key needs two).
    pub then: Option<String>,
}

/// What a confirmation does on `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Remove {
        connection: String,
    },
    Activate {
        tenant: String,
        key_id: String,
    },
    Retire {
        tenant: String,
        key_id: String,
        force: bool,
    },
}

/// A form of one or more lines edited like a shell line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub title: &'static str,
    pub fields: Vec<Field>,
    pub focus: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Filter,
    AddKey,
    Export,
    Verify,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub label: &'static str,
    /// What to type, shown under the field.
    pub hint: &'static str,
    pub value: String,
    /// Cursor position in chars.
    pub cursor: usize,
}

impl Field {
    fn new(label: &'static str, value: impl Into<String>) -> Field {
        let value = value.into();
        Field {
            label,
            hint: "",
            cursor: value.chars().count(),
            value,
        }
    }

    fn hint(mut self, hint: &'static str) -> Field {
        self.hint = hint;
        self
    }

    fn byte_at(&self, char_idx: usize) -> usize {
        self.value
            .char_indices()
            .nth(char_idx)
            .map(|(i, _)| i)
            .unwrap_or(self.value.len())
    }

    /// Edits the line; true when the value changed.
    pub fn edit(&mut self, key: Key) -> bool {
        let len = self.value.chars().count();
        match key {
            Key::Char(c) => {
                let at = self.byte_at(self.cursor);
                self.value.insert(at, c);
                self.cursor += 1;
                true
            }
            Key::Backspace if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.value.remove(at);
                self.cursor -= 1;
                true
            }
            Key::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.value.remove(at);
                true
            }
            Key::Ctrl('u') => {
                let changed = !self.value.is_empty();
                self.value.clear();
                self.cursor = 0;
                changed
            }
            Key::Left => {
                self.cursor = self.cursor.saturating_sub(1);
                false
            }
            Key::Right => {
                self.cursor = (self.cursor + 1).min(len);
                false
            }
            Key::Home | Key::Ctrl('a') => {
                self.cursor = 0;
                false
            }
            Key::End | Key::Ctrl('e') => {
                self.cursor = len;
                false
            }
            _ => false,
        }
    }
}

/// The footer's message line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Info(String),
    /// An error, in the words the CLI would print (`error: …`).
    Error(String),
}

/// The whole state of the terminal UI.
#[derive(Debug)]
pub struct App {
    pub info: LinkInfo,
    pub tab: Tab,
    /// Unix seconds, advanced by `Action::Tick`.
    pub now: i64,
    pub width: u16,
    pub height: u16,
    /// Colours on (off with `NO_COLOR`).
    pub color: bool,
    pub status: Option<StatusView>,
    status_asked_at: Option<i64>,
    status_loading: bool,
    status_dirty: bool,
    pub conns: Connections,
    pub keys: AppleKeys,
    pub backups: Backups,
    pub audit: AuditTail,
    pub dialog: Option<Dialog>,
    pub note: Option<Note>,
    /// Live events arrive (false after the stream was lost: the tick refreshes instead).
    pub live: bool,
    pub quit: bool,
}

/// Rows above and below the tab's list: header (2), tabs (1), the body's borders and its
/// column header (3), the footer's key line (1).
const CHROME_ROWS: u16 = 7;

impl App {
    pub fn new(info: LinkInfo, now: i64, width: u16, height: u16) -> App {
        App {
            info,
            tab: Tab::Connections,
            now,
            width,
            height,
            color: true,
            status: None,
            status_asked_at: None,
            status_loading: false,
            status_dirty: false,
            conns: Connections::default(),
            keys: AppleKeys::default(),
            backups: Backups::default(),
            audit: AuditTail::default(),
            dialog: None,
            note: None,
            live: true,
            quit: false,
        }
    }

    /// What to ask for first: the header counts and the first page of connections.
    pub fn start(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.ask_status(&mut fx);
        self.reload_connections(&mut fx);
        fx
    }

    /// Lines the footer's message takes at this width (0 without one, at most 3).
    pub fn note_lines(&self) -> u16 {
        let Some(note) = &self.note else { return 0 };
        let text = match note {
            Note::Info(t) | Note::Error(t) => t,
        };
        let w = usize::from(self.width.max(1));
        (text.chars().count().div_ceil(w)).clamp(1, 3) as u16
    }

    /// Rows of the tab's list that fit on screen.
    pub fn list_rows(&self) -> usize {
        usize::from(
            self.height
                .saturating_sub(CHROME_ROWS + self.note_lines())
                .max(1),
        )
    }

    /// The one way the App changes.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        let mut fx = Vec::new();
        match action {
            Action::Key(k) => self.key(k, &mut fx),
            Action::Tick(now) => self.tick(now, &mut fx),
            Action::Resize { width, height } => {
                self.width = width;
                self.height = height;
                self.keep_visible();
            }
            Action::Answer { tag, result } => self.answer(tag, result, &mut fx),
            Action::Event(ev) => self.event(ev, &mut fx),
            Action::Progress { done, total } => {
                if let Some(r) = &mut self.backups.running {
                    r.done = done;
                    r.total = total;
                }
            }
            Action::WatchLost(why) => {
                self.live = false;
                self.note = Some(Note::Error(format!(
                    "error: live updates stopped ({why}); the screen now refreshes every {STATUS_EVERY_SECS} s; restart the TUI to follow events again"
                )));
            }
        }
        fx
    }

    // ---- keys ------------------------------------------------------------------------

    fn key(&mut self, k: Key, fx: &mut Vec<Effect>) {
        if k == Key::Ctrl('c') {
            self.quit(fx);
            return;
        }
        if let Some(d) = self.dialog.take() {
            self.dialog_key(d, k, fx);
            return;
        }
        // a key press acknowledges the last message
        self.note = None;
        match k {
            Key::Char('q') => self.quit(fx),
            Key::Char('?') => self.dialog = Some(Dialog::Help),
            Key::Esc => {
                if !self.conns.filter.is_empty() {
                    self.conns.filter.clear();
                    self.refilter(fx);
                } else if self.conns.status.is_some() {
                    self.conns.status = None;
                    self.refilter(fx);
                }
            }
            Key::Char(c @ '1'..='4') => {
                let i = c as usize - '1' as usize;
                self.switch(Tab::ALL[i], fx);
            }
            Key::Tab => self.switch(self.tab.next(), fx),
            Key::BackTab => self.switch(self.tab.prev(), fx),
            Key::Char('j' | 'k' | 'g' | 'G')
            | Key::Up
            | Key::Down
            | Key::PageUp
            | Key::PageDown
            | Key::Home
            | Key::End => self.movement(k, fx),
            Key::Enter => self.enter(fx),
            _ => match self.tab {
                Tab::Connections => self.connections_key(k, fx),
                Tab::AppleKeys => self.keys_key(k, fx),
                Tab::Backups => self.backups_key(k, fx),
                Tab::Audit => self.unbound(k),
            },
        }
    }

    fn unbound(&mut self, k: Key) {
        if let Key::Char(c) = k {
            self.note = Some(Note::Info(format!(
                "`{c}` does nothing on the {} tab; ? lists the keys",
                self.tab.title()
            )));
        }
    }

    fn quit(&mut self, fx: &mut Vec<Effect>) {
        self.quit = true;
        fx.push(Effect::Quit);
    }

    fn switch(&mut self, tab: Tab, fx: &mut Vec<Effect>) {
        self.tab = tab;
        match tab {
            Tab::AppleKeys if !self.keys.loaded => self.reload_keys(fx),
            Tab::Audit if !self.audit.loaded || self.audit.stale => self.reload_audit(fx),
            _ => {}
        }
    }

    fn movement(&mut self, k: Key, fx: &mut Vec<Effect>) {
        let page = self.list_rows();
        let (len, sel) = match self.tab {
            Tab::Connections => (self.conns.rows.len(), &mut self.conns.sel),
            Tab::AppleKeys => (self.keys.rows.len(), &mut self.keys.sel),
            Tab::Audit => (self.audit.records.len(), &mut self.audit.sel),
            Tab::Backups => return,
        };
        let last = len.saturating_sub(1);
        *sel = match k {
            Key::Char('j') | Key::Down => (*sel + 1).min(last),
            Key::Char('k') | Key::Up => sel.saturating_sub(1),
            Key::PageDown => (*sel + page).min(last),
            Key::PageUp => sel.saturating_sub(page),
            Key::Char('g') | Key::Home => 0,
            Key::Char('G') | Key::End => last,
            _ => *sel,
        };
        if self.tab == Tab::Connections {
            self.conns.to_end = matches!(k, Key::Char('G') | Key::End) && self.conns.more();
            self.prefetch(fx);
        }
        self.keep_visible();
    }

    /// Scrolls each list so its selection is on screen.
    fn keep_visible(&mut self) {
        let h = self.list_rows();
        let fit = |sel: usize, top: &mut usize| {
            if sel < *top {
                *top = sel;
            } else if sel >= *top + h {
                *top = sel + 1 - h;
            }
        };
        fit(self.conns.sel, &mut self.conns.top);
        fit(self.keys.sel, &mut self.keys.top);
        fit(self.audit.sel, &mut self.audit.top);
    }

    fn enter(&mut self, fx: &mut Vec<Effect>) {
        match self.tab {
            Tab::Connections => {
                let Some(row) = self.conns.rows.get(self.conns.sel) else {
                    return;
                };
                let connection = row.connection.clone();
                self.dialog = Some(Dialog::Connection(Box::new(ConnDetails {
                    connection: connection.clone(),
                    view: None,
                    audit: None,
                })));
                self.ask_details(&connection, fx);
            }
            Tab::AppleKeys => {
                if let Some(k) = self.keys.rows.get(self.keys.sel) {
                    self.dialog = Some(Dialog::Key(k.clone()));
                }
            }
            Tab::Backups => {
                if let Some(r) = &self.backups.last {
                    self.dialog = Some(Dialog::Backup(Box::new(r.clone())));
                }
            }
            Tab::Audit => {}
        }
    }

    fn ask_details(&self, connection: &str, fx: &mut Vec<Effect>) {
        fx.push(Effect::Call {
            tag: Tag::Show {
                connection: connection.to_owned(),
            },
            req: Request::Show {
                connection: connection.to_owned(),
            },
        });
        let tenant = connection.split('/').next().unwrap_or_default().to_owned();
        fx.push(Effect::Call {
            tag: Tag::ShowAudit {
                connection: connection.to_owned(),
            },
            req: Request::Audit {
                tenant: Some(tenant),
                since: Some(self.now - AUDIT_WINDOW_SECS),
            },
        });
    }

    fn connections_key(&mut self, k: Key, fx: &mut Vec<Effect>) {
        let selected = self
            .conns
            .rows
            .get(self.conns.sel)
            .map(|r| r.connection.clone());
        match k {
            Key::Char('/') => {
                self.dialog = Some(Dialog::Prompt(Prompt {
                    kind: PromptKind::Filter,
                    title: "Filter connections (address or reason)",
                    fields: vec![Field::new("text", self.conns.filter.clone())],
                    focus: 0,
                }));
            }
            Key::Char('s') => {
                self.conns.status = next_status(self.conns.status);
                self.refilter(fx);
            }
            Key::Char('r') => {
                let Some(connection) = selected else { return };
                self.note = Some(Note::Info(format!("refreshing {connection}…")));
                fx.push(Effect::Call {
                    tag: Tag::Change(Change::Refresh),
                    req: Request::Refresh { connection },
                });
            }
            Key::Char('R') => {
                self.note = Some(Note::Info("refreshing every due connection…".into()));
                fx.push(Effect::Call {
                    tag: Tag::Change(Change::RefreshDue),
                    req: Request::RefreshDue,
                });
            }
            Key::Char('d') => {
                let Some(connection) = selected else { return };
                self.dialog = Some(Dialog::Confirm(Confirm {
                    question: format!(
                        "Remove {connection}? Its tokens are deleted from the vault (the provider is not told). y/n"
                    ),
                    op: Pending::Remove { connection },
                    then: None,
                }));
            }
            _ => self.unbound(k),
        }
    }

    /// The tenant new keys and `r` apply to: the selected key's, else the caller's, else
    /// the first tenant.
    fn key_tenant(&self) -> Option<String> {
        self.keys
            .rows
            .get(self.keys.sel)
            .map(|k| k.tenant.clone())
            .or_else(|| self.info.tenant.clone())
            .or_else(|| self.keys.tenants.first().cloned())
    }

    fn keys_key(&mut self, k: Key, fx: &mut Vec<Effect>) {
        let selected = self.keys.rows.get(self.keys.sel).cloned();
        match k {
            Key::Char('a') => {
                self.dialog = Some(Dialog::Prompt(Prompt {
                    kind: PromptKind::AddKey,
                    title: "Add an Apple Music signing key",
                    fields: vec![
                        Field::new("tenant", self.key_tenant().unwrap_or_default())
                            .hint("the tenant that owns the key"),
                        Field::new("Team ID", "")
                            .hint("10 characters, from your Apple developer account"),
                        Field::new("Key ID", "")
                            .hint("10 characters; also in the name AuthKey_KEYID.p8"),
                        Field::new(".p8 file", "")
                            .hint("path of the private key file downloaded from Apple"),
                    ],
                    focus: if self.key_tenant().is_some() { 1 } else { 0 },
                }));
            }
            Key::Char('A') => {
                let Some(key) = selected else { return };
                if key.state == "active" {
                    self.note = Some(Note::Info(format!(
                        "{} is already the active key of {}",
                        key.key_id, key.tenant
                    )));
                    return;
                }
                self.dialog = Some(Dialog::Confirm(Confirm {
                    question: format!(
                        "Activate key {} of {}? The next developer token is signed with it; the active key becomes retiring. y/n",
                        key.key_id, key.tenant
                    ),
                    op: Pending::Activate {
                        tenant: key.tenant,
                        key_id: key.key_id,
                    },
                    then: None,
                }));
            }
            Key::Char('x') => {
                let Some(key) = selected else { return };
                if key.state == "retired" {
                    self.note = Some(Note::Info(format!(
                        "{} of {} is already retired",
                        key.key_id, key.tenant
                    )));
                    return;
                }
                let active = key.state == "active";
                self.dialog = Some(Dialog::Confirm(Confirm {
                    question: format!(
                        "Retire key {} of {}? Tokens it signed stop being renewed. y/n",
                        key.key_id, key.tenant
                    ),
                    then: active.then(|| {
                        format!(
                            "{} is the ACTIVE key: {} has no developer token until another key is activated. Retire it anyway? y/n",
                            key.key_id, key.tenant
                        )
                    }),
                    op: Pending::Retire {
                        tenant: key.tenant,
                        key_id: key.key_id,
                        force: active,
                    },
                }));
            }
            Key::Char('r') => {
                let Some(tenant) = self.key_tenant() else {
                    self.note = Some(Note::Info(
                        "no tenant to renew a developer token for; add a key with `a`".into(),
                    ));
                    return;
                };
                self.note = Some(Note::Info(format!(
                    "asking for the developer token of {tenant}…"
                )));
                fx.push(Effect::Call {
                    tag: Tag::AppleToken {
                        tenant: tenant.clone(),
                    },
                    req: Request::AppleToken { tenant },
                });
            }
            _ => self.unbound(k),
        }
    }

    fn backups_key(&mut self, k: Key, _fx: &mut [Effect]) {
        match k {
            Key::Char('e') => {
                if self.backups.running.is_some() {
                    self.note = Some(Note::Info(
                        "an export is already running; wait for its result".into(),
                    ));
                    return;
                }
                let path = format!(
                    "tokenvault-{}.age",
                    chrono::DateTime::from_timestamp(self.now, 0)
                        .map(|d| d.format("%Y%m%d-%H%M%S").to_string())
                        .unwrap_or_else(|| self.now.to_string())
                );
                self.dialog = Some(Dialog::Prompt(Prompt {
                    kind: PromptKind::Export,
                    title: "Export an encrypted backup",
                    fields: vec![
                        Field::new("file", path).hint("where to write the age file"),
                        Field::new("recipients", self.info.recipients.join(" "))
                            .hint("age1… recipients, separated by spaces"),
                        Field::new("tenant", self.info.tenant.clone().unwrap_or_default())
                            .hint("one tenant, or empty for the whole vault"),
                    ],
                    focus: 0,
                }));
            }
            Key::Char('v') => {
                let path = self
                    .backups
                    .last
                    .as_ref()
                    .map(|r| r.path.clone())
                    .unwrap_or_default();
                self.dialog = Some(Dialog::Prompt(Prompt {
                    kind: PromptKind::Verify,
                    title: "Verify a backup file",
                    fields: vec![
                        Field::new("file", path).hint("the age backup file"),
                        Field::new("identity file", "")
                            .hint("an age identity file (AGE-SECRET-KEY-1…, from age-keygen)"),
                    ],
                    focus: 0,
                }));
            }
            _ => self.unbound(k),
        }
    }

    // ---- dialogs ---------------------------------------------------------------------

    fn dialog_key(&mut self, d: Dialog, k: Key, fx: &mut Vec<Effect>) {
        match d {
            Dialog::Prompt(p) => self.prompt_key(p, k, fx),
            Dialog::Confirm(c) => match k {
                Key::Char('y' | 'Y') => match c.then {
                    Some(q) => {
                        self.dialog = Some(Dialog::Confirm(Confirm {
                            question: q,
                            op: c.op,
                            then: None,
                        }))
                    }
                    None => self.confirmed(c.op, fx),
                },
                Key::Char('n' | 'N' | 'q') | Key::Esc => {
                    self.note = Some(Note::Info("cancelled; nothing changed".into()));
                }
                _ => self.dialog = Some(Dialog::Confirm(c)),
            },
            // help, details, a report: Esc or q closes; the rest is ignored
            d => {
                if !matches!(k, Key::Esc | Key::Char('q')) {
                    self.dialog = Some(d);
                }
            }
        }
    }

    fn confirmed(&mut self, op: Pending, fx: &mut Vec<Effect>) {
        let (tag, req) = match op {
            Pending::Remove { connection } => (
                Tag::Change(Change::Remove {
                    connection: connection.clone(),
                }),
                Request::Remove {
                    connection,
                    revoke: false,
                },
            ),
            Pending::Activate { tenant, key_id } => (
                Tag::Change(Change::AppleKey {
                    tenant: tenant.clone(),
                }),
                Request::AppleKeyActivate { tenant, key_id },
            ),
            Pending::Retire {
                tenant,
                key_id,
                force,
            } => (
                Tag::Change(Change::AppleKey {
                    tenant: tenant.clone(),
                }),
                Request::AppleKeyRetire {
                    tenant,
                    key_id,
                    force,
                },
            ),
        };
        fx.push(Effect::Call { tag, req });
    }

    fn prompt_key(&mut self, mut p: Prompt, k: Key, fx: &mut Vec<Effect>) {
        let last = p.fields.len().saturating_sub(1);
        match k {
            Key::Esc => {
                if p.kind == PromptKind::Filter && !self.conns.filter.is_empty() {
                    self.conns.filter.clear();
                    self.refilter(fx);
                }
                return;
            }
            Key::Enter if p.focus < last => p.focus += 1,
            Key::Tab | Key::Down => p.focus = (p.focus + 1).min(last),
            Key::BackTab | Key::Up => p.focus = p.focus.saturating_sub(1),
            Key::Enter => return self.accept(p, fx),
            k => {
                let Some(f) = p.fields.get_mut(p.focus) else {
                    return;
                };
                if f.edit(k) && p.kind == PromptKind::Filter {
                    // the filter follows each keystroke
                    self.conns.filter = f.value.clone();
                    self.refilter(fx);
                }
            }
        }
        self.dialog = Some(Dialog::Prompt(p));
    }

    fn accept(&mut self, p: Prompt, fx: &mut Vec<Effect>) {
        let value = |i: usize| {
            p.fields
                .get(i)
                .map(|f| f.value.trim().to_owned())
                .unwrap_or_default()
        };
        // every field but the export's tenant is required
        let missing = p
            .fields
            .iter()
            .enumerate()
            .find(|(i, f)| {
                f.value.trim().is_empty()
                    && p.kind != PromptKind::Filter
                    && !(p.kind == PromptKind::Export && *i == 2)
            })
            .map(|(i, f)| (i, f.label));
        if let Some((i, label)) = missing {
            self.note = Some(Note::Error(format!(
                "error: the {label} is empty: type it, or press Esc to cancel"
            )));
            let mut p = p;
            p.focus = i;
            self.dialog = Some(Dialog::Prompt(p));
            return;
        }
        match p.kind {
            PromptKind::Filter => {}
            PromptKind::AddKey => {
                self.note = Some(Note::Info(format!("adding key {}…", value(2))));
                fx.push(Effect::AddAppleKey {
                    tenant: value(0),
                    team_id: value(1),
                    key_id: value(2),
                    p8_path: value(3),
                });
            }
            PromptKind::Export => {
                let path = value(0);
                let tenant = Some(value(2)).filter(|t| !t.is_empty());
                let recipients = value(1)
                    .split([' ', ','])
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect();
                self.backups.running = Some(Running {
                    action: "export",
                    path: path.clone(),
                    done: 0,
                    total: 0,
                });
                fx.push(Effect::Export {
                    path,
                    tenant,
                    recipients,
                });
            }
            PromptKind::Verify => {
                self.backups.running = Some(Running {
                    action: "verify",
                    path: value(0),
                    done: 0,
                    total: 0,
                });
                fx.push(Effect::Verify {
                    path: value(0),
                    identity_path: value(1),
                });
            }
        }
    }

    // ---- loading ---------------------------------------------------------------------

    fn ask_status(&mut self, fx: &mut Vec<Effect>) {
        if self.status_loading {
            self.status_dirty = true;
            return;
        }
        self.status_loading = true;
        self.status_dirty = false;
        self.status_asked_at = Some(self.now);
        fx.push(Effect::Call {
            tag: Tag::Status,
            req: Request::Status,
        });
    }

    fn list_request(&self, after: Option<String>) -> Request {
        Request::List {
            filter: None,
            status: self.conns.status,
            limit: Some(PAGE),
            after,
            contains: Some(self.conns.filter.clone()).filter(|f| !f.is_empty()),
        }
    }

    /// The filter changed: the list starts over, with the selection on its first row.
    fn refilter(&mut self, fx: &mut Vec<Effect>) {
        self.conns.sel = 0;
        self.conns.top = 0;
        self.reload_connections(fx);
    }

    /// Asks for the list again from its start (filter changed, connections added). The
    /// rows on screen stay until the first page arrives.
    fn reload_connections(&mut self, fx: &mut Vec<Effect>) {
        let c = &mut self.conns;
        c.round += 1;
        c.loading = true;
        c.replace = true;
        c.loaded = false;
        c.next = None;
        c.stale = false;
        c.to_end = false;
        fx.push(Effect::Call {
            tag: Tag::Page {
                round: self.conns.round,
            },
            req: self.list_request(None),
        });
    }

    /// Asks for the next page when the selection nears the end of what is loaded.
    fn prefetch(&mut self, fx: &mut Vec<Effect>) {
        let c = &self.conns;
        if c.loading || !c.loaded {
            return;
        }
        let Some(after) = c.next.clone() else { return };
        let near = c.sel + self.list_rows() + PREFETCH >= c.rows.len();
        if near || c.to_end {
            self.conns.loading = true;
            fx.push(Effect::Call {
                tag: Tag::Page {
                    round: self.conns.round,
                },
                req: self.list_request(Some(after)),
            });
        }
    }

    fn reload_keys(&mut self, fx: &mut Vec<Effect>) {
        self.keys.round += 1;
        match &self.info.tenant {
            // a tenant caller sees only its own tenant
            Some(t) => {
                let t = t.clone();
                self.keys.tenants = vec![t.clone()];
                self.ask_keys(&t, fx);
            }
            None => fx.push(Effect::Call {
                tag: Tag::Tenants {
                    round: self.keys.round,
                },
                req: Request::TenantList,
            }),
        }
    }

    fn ask_keys(&self, tenant: &str, fx: &mut Vec<Effect>) {
        fx.push(Effect::Call {
            tag: Tag::AppleKeys {
                round: self.keys.round,
                tenant: tenant.to_owned(),
            },
            req: Request::AppleKeyList {
                tenant: tenant.to_owned(),
            },
        });
    }

    fn reload_audit(&mut self, fx: &mut Vec<Effect>) {
        if self.audit.loading {
            self.audit.stale = true;
            return;
        }
        self.audit.loading = true;
        self.audit.stale = false;
        fx.push(Effect::Call {
            tag: Tag::Audit,
            req: Request::Audit {
                tenant: self.info.tenant.clone(),
                since: Some(self.now - AUDIT_WINDOW_SECS),
            },
        });
    }

    fn tick(&mut self, now: i64, fx: &mut Vec<Effect>) {
        self.now = now;
        let due = self
            .status_asked_at
            .is_none_or(|at| now - at >= STATUS_EVERY_SECS);
        if self.status_dirty || due {
            self.ask_status(fx);
        }
        if self.conns.stale && !self.conns.loading {
            self.reload_connections(fx);
        }
        if self.audit.stale && self.tab == Tab::Audit {
            self.reload_audit(fx);
        }
        if !self.live && due {
            // no events: poll what is on screen
            match self.tab {
                Tab::Connections if !self.conns.loading => self.conns.stale = true,
                Tab::AppleKeys => self.reload_keys(fx),
                Tab::Audit => self.audit.stale = true,
                _ => {}
            }
        }
    }

    // ---- answers ---------------------------------------------------------------------

    fn answer(
        &mut self,
        tag: Tag,
        result: std::result::Result<Response, String>,
        fx: &mut Vec<Effect>,
    ) {
        let resp = match result {
            Ok(r) => r,
            Err(msg) => return self.failed(tag, msg),
        };
        match (tag, resp) {
            (Tag::Status, Response::Status(v)) => {
                self.status_loading = false;
                self.status = Some(v);
                if self.status_dirty {
                    self.ask_status(fx);
                }
            }
            (Tag::Page { round }, Response::Connections { connections, next }) => {
                if round != self.conns.round {
                    return;
                }
                let c = &mut self.conns;
                if c.replace {
                    c.rows.clear();
                    c.replace = false;
                }
                c.rows.extend(connections.into_iter().map(Row::from));
                c.next = next;
                c.loaded = true;
                c.loading = false;
                if c.to_end {
                    c.sel = c.rows.len().saturating_sub(1);
                    c.to_end = c.next.is_some();
                }
                c.sel = c.sel.min(c.rows.len().saturating_sub(1));
                self.keep_visible();
                self.prefetch(fx);
            }
            (Tag::Show { connection }, Response::Connection(v)) => {
                if let Some(Dialog::Connection(d)) = &mut self.dialog
                    && d.connection == connection
                {
                    d.view = Some(v);
                }
            }
            (Tag::ShowAudit { connection }, Response::Audit { records }) => {
                if let Some(Dialog::Connection(d)) = &mut self.dialog
                    && d.connection == connection
                {
                    let mut mine: Vec<AuditRecord> = records
                        .into_iter()
                        .filter(|r| r.target == connection)
                        .collect();
                    mine.reverse();
                    mine.truncate(DETAIL_AUDIT);
                    d.audit = Some(mine);
                }
            }
            (Tag::Tenants { round }, Response::Tenants { tenants }) => {
                if round != self.keys.round {
                    return;
                }
                self.keys.tenants = tenants.into_iter().map(|t| t.name).collect();
                self.keys.rows.clear();
                self.keys.loaded = true;
                for t in self.keys.tenants.clone() {
                    self.ask_keys(&t, fx);
                }
            }
            (Tag::AppleKeys { round, tenant }, Response::AppleKeys { keys }) => {
                if round != self.keys.round {
                    return;
                }
                self.keys.loaded = true;
                let selected = self
                    .keys
                    .rows
                    .get(self.keys.sel)
                    .map(|k| (k.tenant.clone(), k.key_id.clone()));
                self.keys.rows.retain(|k| k.tenant != tenant);
                self.keys.rows.extend(keys);
                // tenants in name order, each tenant's keys as `apple key list` gives them
                self.keys.rows.sort_by(|a, b| a.tenant.cmp(&b.tenant));
                if let Some((t, id)) = selected
                    && let Some(i) = self
                        .keys
                        .rows
                        .iter()
                        .position(|k| k.tenant == t && k.key_id == id)
                {
                    self.keys.sel = i;
                }
                self.keys.sel = self.keys.sel.min(self.keys.rows.len().saturating_sub(1));
                self.keep_visible();
            }
            (Tag::AppleToken { .. }, Response::AppleToken(v)) => {
                // the token itself is dropped here, unseen
                let info = TokenInfo {
                    tenant: v.tenant.clone(),
                    key_id: v.key_id.clone(),
                    issued_at: v.issued_at,
                    expires_at: v.expires_at,
                };
                drop(v);
                self.note = Some(Note::Info(format!(
                    "developer token of {}: key {}, valid until {}",
                    info.tenant,
                    info.key_id,
                    crate::vault::records::fmt_unix(info.expires_at)
                )));
                self.keys.token = Some(info);
                if self.keys.loaded {
                    self.reload_keys(fx);
                }
            }
            (Tag::Change(change), resp) => self.changed(change, resp, fx),
            (Tag::Backup, Response::Backup(report)) => {
                self.backups.running = None;
                self.note = Some(Note::Info(format!(
                    "{} of {} done: {} records",
                    report.action, report.path, report.records
                )));
                self.backups.last = Some(report.clone());
                self.dialog = Some(Dialog::Backup(Box::new(report)));
            }
            (Tag::Audit, Response::Audit { mut records }) => {
                self.audit.loading = false;
                self.audit.loaded = true;
                records.reverse();
                records.truncate(AUDIT_TAIL);
                self.audit.records = records;
                self.audit.sel = self
                    .audit
                    .sel
                    .min(self.audit.records.len().saturating_sub(1));
                self.keep_visible();
                if self.audit.stale {
                    self.reload_audit(fx);
                }
            }
            (tag, _) => {
                self.failed(
                    tag,
                    "error: the answer did not match the request (a daemon of another version?); upgrade both to the same release".into(),
                );
            }
        }
    }

    /// An action failed: its words go to the footer and the UI goes on.
    fn failed(&mut self, tag: Tag, msg: String) {
        match tag {
            Tag::Status => self.status_loading = false,
            Tag::Page { round } if round == self.conns.round => {
                self.conns.loading = false;
                self.conns.loaded = true;
                self.conns.to_end = false;
            }
            Tag::Backup => self.backups.running = None,
            Tag::Audit => self.audit.loading = false,
            _ => {}
        }
        self.note = Some(Note::Error(msg));
    }

    fn changed(&mut self, change: Change, resp: Response, fx: &mut Vec<Effect>) {
        self.status_dirty = true;
        self.audit.stale = true;
        match (change, resp) {
            (Change::Refresh | Change::RefreshDue, Response::Refreshed { results }) => {
                for r in &results {
                    self.apply_refresh(r);
                }
                self.note = Some(Note::Info(summarise_refresh(&results)));
            }
            (Change::Remove { connection }, resp) => {
                self.remove_row(&connection);
                self.note = Some(Note::Info(done_message(resp, || {
                    format!("removed {connection}")
                })));
            }
            (Change::AppleKey { tenant }, resp) => {
                self.note = Some(Note::Info(done_message(resp, || {
                    format!("Apple keys of {tenant} changed")
                })));
                self.keys.round += 1;
                if !self.keys.tenants.contains(&tenant) {
                    self.keys.tenants.push(tenant.clone());
                    self.keys.tenants.sort();
                }
                self.ask_keys(&tenant, fx);
            }
            (_, resp) => self.note = Some(Note::Info(done_message(resp, || "done".into()))),
        }
    }

    fn apply_refresh(&mut self, r: &RefreshResult) {
        if let Some(row) = self
            .conns
            .rows
            .iter_mut()
            .find(|row| row.connection == r.connection)
        {
            if let Some(s) = r.status {
                row.status = s;
            }
            if r.outcome == "refreshed" {
                row.expires_at = r.expires_at;
                row.reason = None;
            } else if r.reason.is_some() && r.outcome == "failed" {
                row.reason = r.reason.clone();
            }
        }
    }

    fn remove_row(&mut self, connection: &str) {
        if let Some(i) = self
            .conns
            .rows
            .iter()
            .position(|r| r.connection == connection)
        {
            self.conns.rows.remove(i);
            if self.conns.sel > i {
                self.conns.sel -= 1;
            }
            self.conns.sel = self.conns.sel.min(self.conns.rows.len().saturating_sub(1));
            self.keep_visible();
        }
    }

    // ---- live events -----------------------------------------------------------------

    fn event(&mut self, ev: Event, fx: &mut Vec<Effect>) {
        self.status_dirty = true;
        self.audit.stale = true;
        let at = ev.at;
        match ev.kind {
            EventKind::Status {
                connection,
                from,
                to,
                reason,
            } => match (from, to) {
                (_, None) => self.remove_row(&connection),
                (None, Some(_)) => self.conns.stale = true,
                (Some(_), Some(to)) => {
                    if let Some(row) = self.row_mut(&connection) {
                        row.status = to;
                        row.reason = reason;
                    }
                    self.refresh_details(&connection, fx);
                }
            },
            EventKind::Refreshed {
                connection,
                ok,
                status,
                expires_at,
                due_at,
                ..
            } => {
                if let Some(row) = self.row_mut(&connection) {
                    row.status = status;
                    row.due_at = due_at;
                    if ok {
                        row.expires_at = expires_at;
                        row.reason = None;
                    }
                }
                self.refresh_details(&connection, fx);
            }
            EventKind::AppleKey { tenant, .. } => {
                if self.keys.loaded {
                    self.keys.round += 1;
                    if !self.keys.tenants.contains(&tenant) {
                        self.keys.tenants.push(tenant.clone());
                        self.keys.tenants.sort();
                    }
                    self.ask_keys(&tenant, fx);
                }
            }
            EventKind::Admin { op, .. } => {
                if op.starts_with("tenant") && self.keys.loaded {
                    self.reload_keys(fx);
                }
            }
            EventKind::Backup {
                op,
                ok,
                path,
                message,
                ..
            } => {
                let when = crate::vault::records::fmt_unix(at);
                let path = path.unwrap_or_default();
                let outcome = if ok { "ok" } else { "failed" };
                self.backups
                    .log
                    .insert(0, format!("{when}  {op} {outcome}  {path}  {message}"));
                self.backups.log.truncate(50);
            }
            EventKind::Handouts { .. } => {}
            EventKind::Lagged { missed } => {
                self.conns.stale = true;
                if self.keys.loaded {
                    self.reload_keys(fx);
                }
                self.note = Some(Note::Info(format!(
                    "missed {missed} live events; reloading"
                )));
            }
        }
        if self.tab == Tab::Audit && self.audit.stale && !self.audit.loading {
            // the Audit tab follows events, at most one request in flight
            self.reload_audit(fx);
        }
    }

    fn row_mut(&mut self, connection: &str) -> Option<&mut Row> {
        self.conns
            .rows
            .iter_mut()
            .find(|r| r.connection == connection)
    }

    fn refresh_details(&self, connection: &str, fx: &mut Vec<Effect>) {
        if let Some(Dialog::Connection(d)) = &self.dialog
            && d.connection == connection
        {
            self.ask_details(connection, fx);
        }
    }
}

/// `s`: all → connected → retrying → token_expired → needs_reauth → error → disconnected → all.
pub fn next_status(s: Option<Status>) -> Option<Status> {
    match s {
        None => Some(Status::ALL[0]),
        Some(s) => Status::ALL
            .iter()
            .position(|x| *x == s)
            .and_then(|i| Status::ALL.get(i + 1).copied()),
    }
}

fn done_message(resp: Response, otherwise: impl FnOnce() -> String) -> String {
    match resp {
        Response::Done { message } => message,
        _ => otherwise(),
    }
}

fn summarise_refresh(results: &[RefreshResult]) -> String {
    match results {
        [] => "nothing was due".into(),
        [r] => {
            let status = r.status.map(|s| s.as_str()).unwrap_or("unknown");
            match &r.reason {
                Some(why) if r.outcome != "refreshed" => {
                    format!("{}: {} ({status}): {why}", r.connection, r.outcome)
                }
                _ => format!("{}: {} ({status})", r.connection, r.outcome),
            }
        }
        many => {
            let n = |o: &str| many.iter().filter(|r| r.outcome == o).count();
            format!(
                "{} refreshed, {} skipped, {} failed",
                n("refreshed"),
                n("skipped"),
                n("failed")
            )
        }
    }
}
