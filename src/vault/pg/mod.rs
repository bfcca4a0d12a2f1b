//! The shared PostgreSQL store (SPEC §12): the connection pool, the schema migrations, and
//! the few statements the vault needs — load every row, read rows by key, write a batch of
//! rows in one transaction with a notification per row, the audit log, claims.
//!
//! Owns: talking to PostgreSQL. Must not: open or seal anything (it moves the vault's
//! sealed MessagePack bytes as they are), know the record types beyond the clear columns it
//! is handed, or log a password or a value.
//!
//! # Threads
//!
//! tokio-postgres is async and the vault API is synchronous (redb's), called from async
//! tasks, from `block_in_place`, and from plain threads (the CLI). The store therefore runs
//! its own small tokio runtime on a dedicated thread; `block` hands a future to it and
//! waits on a channel, which works from any of those callers without nesting runtimes.
//! The runtime is dropped on its own thread when the store shuts down (dropping a runtime
//! inside an async context would panic).
//!
//! # Failures
//!
//! Every operation is bounded (`OP_TIMEOUT`); a database that is down or unreachable gives
//! `Error::StoreUnavailable` and changes nothing: a batch is one PostgreSQL transaction,
//! committed fully or not at all.

pub mod listen;
pub mod schema;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::sync::LockExt;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

/// Longest any one store operation may take before it fails as unavailable.
pub const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Connecting to the database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a daemon records itself in `nodes`; a peer unseen for 3× this is gone.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The notification channel every node listens on.
pub const CHANNEL: &str = "tokenvault";
/// Past this many rows in one commit, one "reload everything" notification is sent
/// instead of one per row (a rekey, a restore).
const NOTIFY_ROWS_MAX: usize = 256;

/// Where the shared store is: `[store] url` / `TOKENVAULT_STORE_URL`, and the password
/// from `[store] password_file` when the URL carries none. `Debug` and `display` never
/// show the password.
#[derive(Clone)]
pub struct StoreConfig {
    config: tokio_postgres::Config,
    display: String,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreConfig").field(&self.display).finish()
    }
}

/// True if `s` names a PostgreSQL store rather than a file.
pub fn is_store_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl StoreConfig {
    /// Parses a `postgres://` URL; `password` (read from `[store] password_file`) is used
    /// when the URL has none.
    pub fn parse(url: &str, password: Option<Secret>) -> Result<StoreConfig> {
        if !is_store_url(url) {
            return Err(Error::invalid(
                "store URL",
                "must start with postgres:// (for example postgres://tokenvault@db.example:5432/tokenvault)",
            ));
        }
        // The parser's message may quote the URL, password included: not passed on.
        let mut config = tokio_postgres::Config::from_str(url).map_err(|_| {
            Error::invalid(
                "store URL",
                "is not a valid PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTIONS])",
            )
        })?;
        if config.get_password().is_none()
            && let Some(p) = &password
        {
            config.password(p.expose().trim_end_matches(['\n', '\r']));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tokenvault");
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let display = display_of(&config);
        Ok(StoreConfig { config, display })
    }

    /// The URL without its password, for messages, `status` and logs.
    pub fn display(&self) -> &str {
        &self.display
    }
}

fn display_of(c: &tokio_postgres::Config) -> String {
    let user = c.get_user().unwrap_or("");
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let db = c.get_dbname().unwrap_or(user);
    let at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("postgres://{at}{host}:{port}/{db}")
}

/// The tables of the store, one per table of the vault file (the due index is the
/// `due_at` column of `connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Meta,
    Tenants,
    Clients,
    Connections,
    TenantKeys,
    Grants,
    AppleKeys,
    BackupFiles,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Meta,
        Table::Tenants,
        Table::Clients,
        Table::Connections,
        Table::TenantKeys,
        Table::Grants,
        Table::AppleKeys,
        Table::BackupFiles,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Tenants => "tenants",
            Table::Clients => "clients",
            Table::Connections => "connections",
            Table::TenantKeys => "tenant_keys",
            Table::Grants => "grants",
            Table::AppleKeys => "apple_keys",
            Table::BackupFiles => "backup_files",
        }
    }

    pub fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    fn key_column(self) -> &'static str {
        match self {
            Table::Meta => "name",
            _ => "key",
        }
    }

    fn has_tenant(self) -> bool {
        matches!(
            self,
            Table::Clients
                | Table::Connections
                | Table::TenantKeys
                | Table::Grants
                | Table::AppleKeys
        )
    }
}

/// One row of a commit.
#[derive(Debug)]
pub enum Row {
    Put {
        table: Table,
        key: String,
        /// The record as stored in the vault file (MessagePack, secrets sealed inside).
        value: Vec<u8>,
        /// Clear columns: the owning tenant, and for connections the status and due time.
        tenant: Option<String>,
        status: Option<String>,
        due_at: Option<i64>,
    },
    Delete {
        table: Table,
        key: String,
    },
}

impl Row {
    fn target(&self) -> (Table, &str) {
        match self {
            Row::Put { table, key, .. } | Row::Delete { table, key } => (*table, key),
        }
    }
}

/// An audit record to append: its time and tenant in clear, the record as MessagePack.
#[derive(Debug)]
pub struct AuditRow {
    pub at: i64,
    pub tenant: Option<String>,
    pub value: Vec<u8>,
}

/// What one vault commit writes, in one PostgreSQL transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub rows: Vec<Row>,
    pub audit: Vec<AuditRow>,
    /// Connections this node holds a lease on, with its token: their rows are written
    /// only while the lease is still theirs (`UPDATE … WHERE lease_token = $t`).
    pub fences: std::collections::HashMap<String, Vec<u8>>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.audit.is_empty()
    }
}

/// A row as read back: (table, key, value; `None` where the row is gone).
pub type RowValue = (Table, String, Option<Vec<u8>>);

/// An error of the database, as the store-unavailable error every caller gets. The
/// reason names the server's own message (`tokio_postgres` alone says only "db error"):
/// its primary message and SQLSTATE, never its detail, which can quote a row.
pub fn unavailable(what: &str, e: impl std::error::Error + 'static) -> Error {
    Error::StoreUnavailable {
        reason: format!("{what}: {}", cause(&e)),
    }
}

/// The store did not answer within `OP_TIMEOUT`.
fn timed_out() -> Error {
    Error::StoreUnavailable {
        reason: format!(
            "the database did not answer in time: no reply within {} s",
            OP_TIMEOUT.as_secs()
        ),
    }
}

/// `e` and its sources, each once, with a server error as its message and SQLSTATE.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let part = match s.downcast_ref::<tokio_postgres::error::DbError>() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => s.to_string(),
        };
        if !out.contains(&part) {
            out.push_str(": ");
            out.push_str(&part);
        }
        src = s.source();
    }
    out
}

/// The shared store: a pool over one database, and the runtime that drives it.
pub struct Store {
    handle: tokio::runtime::Handle,
    pool: Pool,
    config: StoreConfig,
    /// This process's id among the nodes: in notifications (to skip its own) and leases.
    node: String,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The vault's applier, for rows this node must re-read (a lost lease).
    resync: std::sync::Mutex<Option<std::sync::mpsc::Sender<listen::Notice>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.config.display)
            .field("node", &self.node)
            .finish()
    }
}

impl Store {
    /// Starts the store's runtime and pool and checks that the database answers.
    pub fn connect(config: &StoreConfig) -> Result<std::sync::Arc<Store>> {
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("tokenvault-store".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("tokenvault-store-io")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| Error::io("cannot start the store's thread", e))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| Error::Internal("the store's thread did not start".into()))?
            .map_err(|e| Error::io("cannot start the store's runtime", e))?;
        let mgr = Manager::from_config(
            config.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the store's pool: {e}")))?;
        let node = format!(
            "{}-{}",
            std::process::id(),
            hex::encode(crate::vault::crypto::random_bytes(4))
        );
        let store = std::sync::Arc::new(Store {
            handle,
            pool,
            config: config.clone(),
            node,
            stop: std::sync::Mutex::new(Some(stop_tx)),
            resync: std::sync::Mutex::new(None),
        });
        store.block(|p| async move {
            let c = get(&p).await?;
            c.simple_query("SELECT 1")
                .await
                .map_err(|e| unavailable("the database does not answer", e))?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Where `resync` sends rows to re-read (the vault's applier).
    pub(crate) fn set_resync(&self, tx: std::sync::mpsc::Sender<listen::Notice>) {
        *self.resync.lock_or_recover() = Some(tx);
    }

    /// Has the vault re-read these connections from the database (its own write of them
    /// was refused: the lease had gone to another node).
    pub(crate) fn resync(&self, keys: &[String]) {
        if let Some(tx) = &*self.resync.lock_or_recover() {
            for k in keys {
                let _ = tx.send(listen::Notice::Row(Table::Connections, k.clone()));
            }
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Stops the runtime (the listener with it). Later calls fail as unavailable.
    pub fn shutdown(&self) {
        if let Some(tx) = self.stop.lock_or_recover().take() {
            let _ = tx.send(());
        }
    }

    /// Runs `f(pool)` on the store's runtime and waits for it, bounded by `OP_TIMEOUT`.
    /// Callable from any thread, inside a tokio task or not.
    pub fn block<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.pool.clone());
        self.handle.spawn(async move {
            let r = match tokio::time::timeout(OP_TIMEOUT, fut).await {
                Ok(r) => r,
                Err(_) => Err(timed_out()),
            };
            let _ = tx.send(r);
        });
        rx.recv().map_err(|_| Error::StoreUnavailable {
            reason: "the store's connection worker stopped".into(),
        })?
    }

    /// `block` for async callers: runs on the store's runtime, awaited here.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let fut = f(self.pool.clone());
        let j = self.handle.spawn(async move {
            match tokio::time::timeout(OP_TIMEOUT, fut).await {
                Ok(r) => r,
                Err(_) => Err(timed_out()),
            }
        });
        j.await.map_err(|_| Error::StoreUnavailable {
            reason: "the store's connection worker stopped".into(),
        })?
    }

    /// Applies every migration not yet applied, each in its own transaction, under an
    /// advisory lock. Returns the schema version now in force.
    pub fn migrate(&self) -> Result<i32> {
        self.block(|p| async move {
            let mut c = get(&p).await?;
            let tx = c
                .transaction()
                .await
                .map_err(|e| unavailable("cannot begin a transaction", e))?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7342001);
                 CREATE TABLE IF NOT EXISTS schema_migrations (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(|e| unavailable("cannot create schema_migrations", e))?;
            let have: i32 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM schema_migrations",
                    &[],
                )
                .await
                .map_err(|e| unavailable("cannot read schema_migrations", e))?
                .get(0);
            if have > schema::latest() {
                return Err(Error::TooNew {
                    path: std::path::PathBuf::from("the shared store"),
                    found: have as u32,
                    supported: schema::latest() as u32,
                });
            }
            for (v, sql) in schema::MIGRATIONS.iter().filter(|m| m.0 > have) {
                tx.batch_execute(sql)
                    .await
                    .map_err(|e| unavailable(&format!("schema migration {v} failed"), e))?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[v])
                    .await
                    .map_err(|e| unavailable("cannot record a migration", e))?;
            }
            tx.commit()
                .await
                .map_err(|e| unavailable("cannot commit the schema", e))?;
            Ok(schema::latest())
        })
    }

    /// The schema version of the database (0: none yet).
    pub fn schema_version(&self) -> Result<i32> {
        self.block(|p| async move {
            let c = get(&p).await?;
            let exists: bool = c
                .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
                .await
                .map_err(|e| unavailable("cannot read the schema", e))?
                .get(0);
            if !exists {
                return Ok(0);
            }
            Ok(c.query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(|e| unavailable("cannot read schema_migrations", e))?
            .get(0))
        })
    }

    /// Writes the vault's META records if there are none yet. False: a vault already
    /// lives in this database (nothing was written).
    pub fn init_meta(&self, format: Vec<u8>, header: Vec<u8>) -> Result<bool> {
        self.block(|p| async move {
            let mut c = get(&p).await?;
            let tx = c
                .transaction()
                .await
                .map_err(|e| unavailable("cannot begin a transaction", e))?;
            tx.execute("LOCK TABLE meta IN EXCLUSIVE MODE", &[])
                .await
                .map_err(|e| unavailable("cannot lock meta", e))?;
            let n = tx
                .query("SELECT 1 FROM meta WHERE name = 'header'", &[])
                .await
                .map_err(|e| unavailable("cannot read meta", e))?
                .len();
            if n > 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('format_version', $1), ('header', $2)",
                &[&format, &header],
            )
            .await
            .map_err(|e| unavailable("cannot write the vault header", e))?;
            tx.commit()
                .await
                .map_err(|e| unavailable("cannot commit the vault header", e))?;
            Ok(true)
        })
    }

    /// Every row of every table (not the audit log), as (table, key, value).
    pub fn load_all(&self) -> Result<Vec<(Table, String, Vec<u8>)>> {
        self.block(|p| async move {
            let mut c = get(&p).await?;
            // One snapshot for all tables.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| unavailable("cannot begin a transaction", e))?;
            let mut out = Vec::new();
            for t in Table::ALL {
                let sql = format!("SELECT {}, value FROM {}", t.key_column(), t.name());
                for r in tx
                    .query(sql.as_str(), &[])
                    .await
                    .map_err(|e| unavailable(&format!("cannot read {}", t.name()), e))?
                {
                    out.push((t, r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)));
                }
            }
            tx.commit()
                .await
                .map_err(|e| unavailable("cannot end the read", e))?;
            Ok(out)
        })
    }

    /// The current value of each (table, key), `None` where the row is gone.
    pub fn read_rows(&self, keys: Vec<(Table, String)>) -> Result<Vec<RowValue>> {
        self.block(|p| async move {
            let c = get(&p).await?;
            let mut out = Vec::with_capacity(keys.len());
            for (t, k) in keys {
                let sql = format!(
                    "SELECT value FROM {} WHERE {} = $1",
                    t.name(),
                    t.key_column()
                );
                let stmt = c
                    .prepare_cached(&sql)
                    .await
                    .map_err(|e| unavailable("cannot prepare a read", e))?;
                let v = c
                    .query_opt(&stmt, &[&k])
                    .await
                    .map_err(|e| unavailable(&format!("cannot read {}", t.name()), e))?
                    .map(|r| r.get::<_, Vec<u8>>(0));
                out.push((t, k, v));
            }
            Ok(out)
        })
    }

    /// Writes `batch` in one transaction and notifies the other nodes of every row it
    /// changed (after commit, as PostgreSQL delivers notifications). Fully or not at all.
    /// Returns the fenced connections whose lease was lost (taken over by another node
    /// after it ran out): their rows were not written; everything else was.
    pub fn commit(&self, batch: Batch) -> Result<Vec<String>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let node = self.node.clone();
        self.block(move |p| async move { commit_batch(&p, &node, batch).await })
    }

    /// Audit records' MessagePack, oldest first, with `at ≥ since`, of `tenant` if given.
    pub fn audit(&self, tenant: Option<String>, since: i64) -> Result<Vec<(i64, Vec<u8>)>> {
        self.block(move |p| async move {
            let c = get(&p).await?;
            let rows = c
                .query(
                    "SELECT id, value FROM audit WHERE at >= $1 AND ($2::text IS NULL OR tenant = $2) ORDER BY id",
                    &[&since, &tenant],
                )
                .await
                .map_err(|e| unavailable("cannot read the audit log", e))?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }

    /// Claims `key` for `lease` (SPEC §12): in one short transaction, the row is locked
    /// with `FOR UPDATE SKIP LOCKED` and its lease set by the database's clock, if no
    /// other node holds an unexpired lease. `Ok(None)`: claimed; `Ok(Some(d))`: held
    /// elsewhere for about `d` more (or being claimed right now). A granted claim also
    /// returns the row's current value, so the node refreshes from the latest refresh
    /// token even when its mirror has not yet heard of the previous holder's commit.
    pub async fn claim(
        &self,
        key: String,
        token: Vec<u8>,
        lease: Duration,
    ) -> Result<std::result::Result<Vec<u8>, Duration>> {
        let node = self.node.clone();
        self.run(move |p| async move {
            let c = get(&p).await?;
            let secs = lease.as_secs_f64();
            let got = c
                .query(
                    "WITH c AS (SELECT key FROM connections WHERE key = $1 \
                       AND (lease_until IS NULL OR lease_until < now() OR lease_token = $2) \
                       FOR UPDATE SKIP LOCKED) \
                     UPDATE connections SET lease_until = now() + make_interval(secs => $3), \
                       lease_token = $2, lease_node = $4 \
                     FROM c WHERE connections.key = c.key RETURNING connections.value",
                    &[&key, &token, &secs, &node],
                )
                .await
                .map_err(|e| unavailable("cannot claim the connection", e))?;
            if let Some(row) = got.first() {
                return Ok(Ok(row.get::<_, Vec<u8>>(0)));
            }
            let left: Option<f64> = c
                .query_opt(
                    "SELECT greatest(0, extract(epoch FROM lease_until - now()))::float8 \
                     FROM connections WHERE key = $1",
                    &[&key],
                )
                .await
                .map_err(|e| unavailable("cannot read the connection's lease", e))?
                .and_then(|r| r.get::<_, Option<f64>>(0));
            Ok(Err(Duration::from_secs_f64(left.unwrap_or(0.05).max(0.05))))
        })
        .await
    }

    /// Gives a lease back (only if it is still ours).
    pub async fn release(&self, key: String, token: Vec<u8>) -> Result<()> {
        self.run(move |p| async move {
            let c = get(&p).await?;
            c.execute(
                "UPDATE connections SET lease_until = NULL, lease_token = NULL, lease_node = NULL \
                 WHERE key = $1 AND lease_token = $2",
                &[&key, &token],
            )
            .await
            .map_err(|e| unavailable("cannot release the connection's lease", e))?;
            Ok(())
        })
        .await
    }

    /// Records this node as alive (`nodes` table), for the peers line of `status`.
    pub async fn heartbeat(&self) -> Result<()> {
        let node = self.node.clone();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let pid = std::process::id() as i32;
        self.run(move |p| async move {
            let c = get(&p).await?;
            c.execute(
                "INSERT INTO nodes (node, host, pid) VALUES ($1, $2, $3) \
                 ON CONFLICT (node) DO UPDATE SET seen_at = now()",
                &[&node, &host, &pid],
            )
            .await
            .map_err(|e| unavailable("cannot record this node", e))?;
            c.execute(
                "DELETE FROM nodes WHERE seen_at < now() - interval '1 hour'",
                &[],
            )
            .await
            .map_err(|e| unavailable("cannot record this node", e))?;
            Ok(())
        })
        .await
    }

    /// Nodes seen within `within`, as (node, host, pid, seconds since seen).
    pub fn peers(&self, within: Duration) -> Result<Vec<(String, String, i32, f64)>> {
        let secs = within.as_secs_f64();
        self.block(move |p| async move {
            let c = get(&p).await?;
            let rows = c
                .query(
                    "SELECT node, host, pid, extract(epoch FROM now() - seen_at)::float8 FROM nodes \
                     WHERE seen_at > now() - make_interval(secs => $1) ORDER BY started_at",
                    &[&secs],
                )
                .await
                .map_err(|e| unavailable("cannot read the nodes", e))?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect())
        })
    }

    pub fn audit_count(&self) -> Result<u64> {
        self.block(|p| async move {
            let c = get(&p).await?;
            let n: i64 = c
                .query_one("SELECT count(*) FROM audit", &[])
                .await
                .map_err(|e| unavailable("cannot count the audit log", e))?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub(crate) async fn get(p: &Pool) -> Result<deadpool_postgres::Object> {
    p.get()
        .await
        .map_err(|e| unavailable("cannot connect to the database", e))
}

fn upsert_sql(t: Table) -> String {
    match t {
        Table::Meta => "INSERT INTO meta (name, value) VALUES ($1, $2) \
                        ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
            .into(),
        Table::Connections => "INSERT INTO connections (key, tenant, status, due_at, value) \
                               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET \
                               tenant = EXCLUDED.tenant, status = EXCLUDED.status, \
                               due_at = EXCLUDED.due_at, value = EXCLUDED.value"
            .into(),
        t if t.has_tenant() => format!(
            "INSERT INTO {0} (key, tenant, value) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET tenant = EXCLUDED.tenant, value = EXCLUDED.value",
            t.name()
        ),
        t => format!(
            "INSERT INTO {0} (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            t.name()
        ),
    }
}

/// The notification payload for one row: `node TAB table TAB key` (names only, never a
/// value). `*` as the table means "reload everything".
pub fn payload(node: &str, table: &str, key: &str) -> String {
    format!("{node}\t{table}\t{key}")
}

async fn commit_batch(p: &Pool, node: &str, batch: Batch) -> Result<Vec<String>> {
    let mut c = get(p).await?;
    let tx = c
        .transaction()
        .await
        .map_err(|e| unavailable("cannot begin a transaction", e))?;
    let fail = |e: tokio_postgres::Error| unavailable("the change was not saved", e);
    let mut stmts = std::collections::HashMap::new();
    for t in Table::ALL {
        if batch.rows.iter().any(|r| r.target().0 == t) {
            let up = tx.prepare_cached(&upsert_sql(t)).await.map_err(fail)?;
            let del = tx
                .prepare_cached(&format!(
                    "DELETE FROM {} WHERE {} = $1",
                    t.name(),
                    t.key_column()
                ))
                .await
                .map_err(fail)?;
            stmts.insert(t, (up, del));
        }
    }
    let fenced = if batch.fences.is_empty() {
        None
    } else {
        Some(
            tx.prepare_cached(
                "UPDATE connections SET tenant = $2, status = $3, due_at = $4, value = $5 \
                 WHERE key = $1 AND lease_token = $6",
            )
            .await
            .map_err(fail)?,
        )
    };
    let fenced = &fenced;
    let fences = &batch.fences;
    // Pipelined: tokio-postgres sends the statements without waiting for each reply.
    let txr = &tx;
    let mut futs = Vec::with_capacity(batch.rows.len());
    for row in &batch.rows {
        let Some((up, del)) = stmts.get(&row.target().0) else {
            continue;
        };
        let tx = txr;
        futs.push(async move {
            match row {
                Row::Put {
                    table,
                    key,
                    value,
                    tenant,
                    status,
                    due_at,
                } => {
                    let tenant = tenant.clone().unwrap_or_default();
                    match table {
                        Table::Connections => {
                            let status = status.clone().unwrap_or_default();
                            match (fences.get(key), fenced) {
                                (Some(token), Some(f)) => {
                                    let n = tx
                                        .execute(f, &[key, &tenant, &status, due_at, value, token])
                                        .await?;
                                    // 0 rows: the lease is no longer ours
                                    Ok(if n == 0 { u64::MAX } else { n })
                                }
                                _ => {
                                    tx.execute(up, &[key, &tenant, &status, due_at, value])
                                        .await
                                }
                            }
                        }
                        Table::Meta => tx.execute(up, &[key, value]).await,
                        t if t.has_tenant() => tx.execute(up, &[key, &tenant, value]).await,
                        _ => tx.execute(up, &[key, value]).await,
                    }
                }
                Row::Delete { key, .. } => tx.execute(del, &[key]).await,
            }
        });
    }
    let done = futures::future::try_join_all(futs).await.map_err(fail)?;
    let lost: Vec<String> = batch
        .rows
        .iter()
        .zip(&done)
        .filter(|(_, n)| **n == u64::MAX)
        .map(|(r, _)| r.target().1.to_owned())
        .collect();
    if !batch.audit.is_empty() {
        let ins = tx
            .prepare_cached("INSERT INTO audit (at, tenant, value) VALUES ($1, $2, $3)")
            .await
            .map_err(fail)?;
        let futs = batch
            .audit
            .iter()
            .map(|a| async { txr.execute(&ins, &[&a.at, &a.tenant, &a.value]).await });
        futures::future::try_join_all(futs).await.map_err(fail)?;
    }
    if !batch.rows.is_empty() {
        let notify = tx
            .prepare_cached("SELECT pg_notify($1, $2)")
            .await
            .map_err(fail)?;
        let payloads: Vec<String> = if batch.rows.len() > NOTIFY_ROWS_MAX {
            vec![payload(node, "*", "")]
        } else {
            let mut seen = std::collections::BTreeSet::new();
            batch
                .rows
                .iter()
                .map(|r| r.target())
                .filter(|(_, k)| !lost.iter().any(|l| l == k))
                .filter(|t| seen.insert(*t))
                .map(|(t, k)| payload(node, t.name(), k))
                .collect()
        };
        let futs = payloads
            .iter()
            .map(|pl| async { txr.query(&notify, &[&CHANNEL, pl]).await });
        futures::future::try_join_all(futs).await.map_err(fail)?;
    }
    tx.commit().await.map_err(fail)?;
    Ok(lost)
}
