//! Every table of the vault file, as typed redb definitions, and the format version.
//!
//! Values are MessagePack (`rmp_serde::to_vec_named`, so fields can be added with
//! `#[serde(default)]` without a format bump). Keys are clear text: names, times and
//! statuses are not secret (SPEC §4); secrets live inside `Sealed` fields of the values.
//!
//! Changing the layout of a table in a way old code cannot read bumps `FORMAT_VERSION` and
//! adds a step to `vault::migrate`.

use redb::TableDefinition;

/// Version of the file layout. Files with a larger number are refused; smaller ones are
/// migrated on open.
pub const FORMAT_VERSION: u32 = 1;

/// `format_version` → u32 big-endian; `header` → MessagePack `Header`.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// tenant name → `TenantRecord`
pub const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// `TENANT/PROVIDER` → `ClientRecord` (client secret sealed)
pub const CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("clients");
/// `TENANT/PROVIDER/ACCOUNT` → `ConnectionRecord` (tokens sealed)
pub const CONNECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("connections");
/// (due unix seconds, connection key) → () : the scheduler's index, kept in step with
/// `ConnectionRecord::due_at` by `vault::Tx::put_connection`.
pub const DUE: TableDefinition<(i64, &str), ()> = TableDefinition::new("due");
/// sequence number → `AuditRecord` (never a secret)
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// tenant key id → `TenantKeyRecord` (a hash of the key, never the key)
pub const TENANT_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenant_keys");
/// uid → tenant name
pub const GRANTS: TableDefinition<u32, &str> = TableDefinition::new("grants");
/// `TENANT/KEY_ID` → `AppleKeyRecord` (private key sealed)
pub const APPLE_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("apple_keys");
/// backup file path → `BackupFileRecord`: the files the scheduled backups wrote (what the
/// schedule and its retention trust, never the names found in the directory). Files made
/// before this table existed have no such table; readers treat it as empty.
pub const BACKUP_FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("backup_files");

/// Table names as used in sealing associated data. A sealed value only opens under the
/// name of the table it was written to.
pub mod names {
    pub const CLIENTS: &str = "clients";
    pub const CONNECTIONS: &str = "connections";
    pub const APPLE_KEYS: &str = "apple_keys";
}
