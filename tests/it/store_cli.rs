//! The shared PostgreSQL store through the real binary: `init --store`, the ordinary
//! commands on it, `[store] url` with `password_file`, `store migrate --to` both ways with
//! every record kept, and what a database administrator can read (no secret in clear).

use crate::support::postgres::Pg;
use crate::support::*;

const ACCESS: &str = "acc-7f3e9b1c2d4a";
const REFRESH: &str = "ref-5a6b7c8d9e0f";
const CLIENT_SECRET: &str = "csecret-1a2b3c4d";

/// `tokenvault init --store URL` with fast KDF parameters, on `tv`'s environment.
fn init_store(tv: &TestVault, url: &str) -> assert_cmd::Command {
    let mut c = tv.cmd();
    c.args([
        "init",
        "--kdf-memory-mib",
        "19",
        "--kdf-iterations",
        "2",
        "--store",
        url,
    ]);
    c
}

fn seed(tv: &TestVault, env: &[(&str, &str)]) {
    let run = |args: &[&str], stdin: Option<String>| {
        let mut c = tv.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args);
        if let Some(s) = stdin {
            c.write_stdin(s);
        }
        c.assert().success();
    };
    run(&["tenant", "add", "acme"], None);
    let secret = tv.file("client-secret", CLIENT_SECRET.as_bytes());
    run(
        &[
            "client",
            "set",
            "acme",
            "spotify",
            "--client-id",
            "cid-visible",
            "--client-secret-file",
            secret.to_str().unwrap(),
        ],
        None,
    );
    run(
        &["put", "acme/spotify/alice"],
        Some(
            serde_json::json!({"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 3600})
                .to_string(),
        ),
    );
}

#[test]
fn init_store_then_put_get_list_through_the_binary() {
    let pg = Pg::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let tv = TestVault::empty();
    let out = tv
        .cmd()
        .args([
            "init",
            "--kdf-memory-mib",
            "19",
            "--kdf-iterations",
            "2",
            "--kdf-parallelism",
            "1",
            "--store",
            &url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains(crate::support::postgres::PASSWORD),
        "password printed"
    );
    assert!(
        !tv.path.exists(),
        "init --store must not create a vault file"
    );
    // A second init refuses and writes nothing.
    let again = init_store(&tv, &url).output().unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already holds"),
        "{}",
        stderr(&again)
    );
    assert!(!stderr(&again).contains(crate::support::postgres::PASSWORD));
    seed(&tv, &[("TOKENVAULT_STORE_URL", &url)]);
    let got = tv
        .cmd()
        .env("TOKENVAULT_STORE_URL", &url)
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(stdout(&got), format!("{ACCESS}\n"));
    let list = tv
        .cmd()
        .env("TOKENVAULT_STORE_URL", &url)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(stdout(&list).contains("acme/spotify/alice"));
    // status names the store, without the password
    let st = tv
        .cmd()
        .env("TOKENVAULT_STORE_URL", &url)
        .args(["status"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", stderr(&st));
    assert!(
        stdout(&st).contains(&format!("127.0.0.1:{}/{db}", pg.port)),
        "{}",
        stdout(&st)
    );
    assert!(!stdout(&st).contains(crate::support::postgres::PASSWORD));
    // without the store setting, the file vault does not exist
    tv.cmd().args(["list"]).assert().code(4);
}

#[test]
fn the_config_file_names_the_store_and_its_password_file() {
    let pg = Pg::shared();
    let db = pg.database();
    let tv = TestVault::empty();
    let pw = tv.file("db-password", crate::support::postgres::PASSWORD.as_bytes());
    let cfg = tv.file(
        "config.toml",
        format!(
            "[store]\nurl = \"{}\"\npassword_file = \"{}\"\n",
            pg.url_without_password(&db),
            pw.display()
        )
        .as_bytes(),
    );
    let with_cfg = |args: &[&str]| {
        let mut c = tv.cmd();
        c.env("TOKENVAULT_CONFIG", &cfg).args(args);
        c
    };
    with_cfg(&["init", "--kdf-memory-mib", "19", "--kdf-iterations", "2"])
        .assert()
        .success();
    seed(&tv, &[("TOKENVAULT_CONFIG", cfg.to_str().unwrap())]);
    let out = with_cfg(&["get", "acme/spotify/alice"]).output().unwrap();
    assert_eq!(stdout(&out), format!("{ACCESS}\n"), "{}", stderr(&out));
    // a wrong database password: a clear error, exit 7, the password not echoed
    let bad = tv.file("bad-password", b"wrong-db-password");
    let out = tv
        .cmd()
        .env("TOKENVAULT_CONFIG", &cfg)
        .env("TOKENVAULT_STORE_PASSWORD_FILE", &bad)
        .args(["list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("PostgreSQL store is unavailable"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("wrong-db-password"));
}

fn counts(tv: &TestVault, env: (&str, &str)) -> serde_json::Value {
    let out = tv
        .cmd()
        .env(env.0, env.1)
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn store_migrate_copies_a_file_to_postgres_and_back() {
    let pg = Pg::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let tv = TestVault::new();
    seed(&tv, &[]);
    let out = tv
        .cmd()
        .args(["store", "migrate", "--to", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("connections") && report.contains("1 -> 1"),
        "{report}"
    );
    assert!(
        !report.contains(crate::support::postgres::PASSWORD),
        "{report}"
    );
    // the copy answers the same
    let got = tv
        .cmd()
        .env("TOKENVAULT_STORE_URL", &url)
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(stdout(&got), format!("{ACCESS}\n"), "{}", stderr(&got));
    assert_eq!(
        counts(&tv, ("TOKENVAULT_STORE_URL", &url))
            .as_array()
            .map(|a| a.len()),
        Some(1)
    );
    // a second migrate into the same database refuses
    let again = tv
        .cmd()
        .args(["store", "migrate", "--to", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    // and back to a new file
    let back = tv.dir.path().join("back.redb");
    let out = tv
        .cmd()
        .env("TOKENVAULT_STORE_URL", &url)
        .args(["store", "migrate", "--to", back.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got = tv
        .cmd()
        .env("TOKENVAULT_VAULT", &back)
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert_eq!(stdout(&got), format!("{ACCESS}\n"), "{}", stderr(&got));
    let audit = tv
        .cmd()
        .env("TOKENVAULT_VAULT", &back)
        .args(["audit", "--json"])
        .output()
        .unwrap();
    let a = stdout(&audit);
    assert!(
        a.matches("store_migrate").count() >= 2,
        "both migrations audited: {a}"
    );
}

/// What a database administrator sees: every text and bytea column of every table, as
/// text and as hex; no token, refresh token or client secret appears in either.
#[test]
fn a_database_administrator_sees_no_secret() {
    let pg = Pg::shared();
    let db = pg.database();
    let url = pg.url(&db);
    let tv = TestVault::empty();
    init_store(&tv, &url).assert().success();
    seed(&tv, &[("TOKENVAULT_STORE_URL", &url)]);
    let cols = pg.psql(
        &db,
        "SELECT table_name || '.' || column_name || '.' || data_type FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type IN ('text', 'bytea')",
    );
    let mut seen = String::new();
    for col in cols.lines() {
        let mut parts = col.splitn(3, '.');
        let (t, c, ty) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        // bytea: printable bytes as they are (escape) and every byte as hex
        let exprs = if ty == "bytea" {
            vec![
                format!("encode({c}, 'escape')"),
                format!("encode({c}, 'hex')"),
            ]
        } else {
            vec![c.to_owned()]
        };
        for e in exprs {
            seen.push_str(&pg.psql(&db, &format!("SELECT {e} FROM {t}")));
        }
    }
    assert!(seen.contains("acme/spotify/alice"), "names are in clear");
    assert!(seen.contains("cid-visible"), "the client id is not secret");
    for secret in [ACCESS, REFRESH, CLIENT_SECRET] {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!seen.contains(secret), "{secret} in clear in the database");
        assert!(!seen.contains(&hex), "{secret} as hex in the database");
    }
}
