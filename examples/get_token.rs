//! A Rust program asking a running `tokenvault serve` for a valid access token: the few
//! lines a service needs instead of keeping tokens itself.
//!
//! ```sh
//! tokenvault serve --passphrase-file ~/.config/tokenvault/passphrase &
//! cargo run --example get_token -- acme/spotify/alice
//! TOKENVAULT_TENANT_KEY=tvk_… cargo run --example get_token -- acme/spotify/alice
//! ```
//!
//! It prints the token's length, not the token: a real program puts it in an
//! `Authorization: Bearer …` header and nowhere else.

use std::process::ExitCode;
use std::time::Duration;
use tokenvault::client;
use tokenvault::secret::Secret;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(connection) = std::env::args().nth(1) else {
        eprintln!("usage: get_token TENANT/PROVIDER/ACCOUNT");
        return ExitCode::from(2);
    };
    // TOKENVAULT_SOCKET, else the default socket of SPEC §3
    let socket = client::default_socket();
    // at least a minute of validity left when we get it (refreshed first if needed)
    let min_ttl = Duration::from_secs(60);
    let token = match std::env::var("TOKENVAULT_TENANT_KEY") {
        Ok(key) => client::get_token_as(&socket, Secret::new(key), &connection, min_ttl).await,
        Err(_) => client::get_token(&socket, &connection, min_ttl).await,
    };
    match token {
        Ok(token) => {
            let header = format!("Bearer {}", token.expose());
            println!(
                "got a token for {connection} ({} bytes)",
                token.expose().len()
            );
            drop(header);
            ExitCode::SUCCESS
        }
        Err(e) => {
            // the same messages and exit codes as `tokenvault get`
            eprintln!("get_token: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
