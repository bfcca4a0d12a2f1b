//! The PostgreSQL schema of the shared store, as versioned migrations (SPEC §12).
//!
//! Owns: the SQL of every table and index, in order. Each step runs once, in its own
//! transaction, recorded in `schema_migrations`; `migrate` takes an advisory lock so two
//! nodes starting at once do not both apply a step. Must not: change a step once released
//! (add a new one instead), or hold anything secret in a clear column.
//!
//! What a database administrator sees: names (tenants, providers, accounts, key ids),
//! statuses, due times and lease columns in clear; every value is the same MessagePack
//! record as in the redb file, whose secrets are sealed (XChaCha20-Poly1305, associated data
//! binding format version, table, record key and term), so a row copied to another key or
//! tenant fails to open. `meta.header` holds the KDF salt and parameters and the keyring
//! sealed by the passphrase-derived key, which never leaves the nodes.

/// (version, SQL). Applied in order; the highest applied is the schema version.
pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE tenants (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE clients (
    key    text PRIMARY KEY,
    tenant text NOT NULL,
    value  bytea NOT NULL
);
CREATE TABLE connections (
    key         text PRIMARY KEY,
    tenant      text NOT NULL,
    status      text NOT NULL,
    due_at      bigint,
    value       bytea NOT NULL,
    lease_until timestamptz,
    lease_token bytea,
    lease_node  text
);
CREATE INDEX connections_due ON connections (due_at) WHERE due_at IS NOT NULL;
CREATE TABLE audit (
    id     bigserial PRIMARY KEY,
    at     bigint NOT NULL,
    tenant text,
    value  bytea NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE TABLE tenant_keys (
    key    text PRIMARY KEY,
    tenant text NOT NULL,
    value  bytea NOT NULL
);
CREATE TABLE grants (
    key    text PRIMARY KEY,
    tenant text NOT NULL,
    value  bytea NOT NULL
);
CREATE TABLE apple_keys (
    key    text PRIMARY KEY,
    tenant text NOT NULL,
    value  bytea NOT NULL
);
CREATE TABLE backup_files (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE nodes (
    node       text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);
"#,
)];

/// The schema version this build writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}
