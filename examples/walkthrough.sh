#!/usr/bin/env bash
# A short walk-through of tokenvault in a throw-away directory: create a vault, add a
# tenant, import a token, read it back, list, show and status. Nothing outside the temp
# directory is touched. (Replaced by `tokenvault demo` once that exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
tv="$PWD/target/release/tokenvault"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TOKENVAULT_VAULT="$work/vault.redb"
export TOKENVAULT_SOCKET="$work/tokenvault.sock"
export TOKENVAULT_CONFIG="$work/config.toml"
printf 'walk-through passphrase\n' > "$work/pass" && chmod 600 "$work/pass"
export TOKENVAULT_PASSPHRASE_FILE="$work/pass"

run() { printf '\n$ tokenvault %s\n' "$*"; "$tv" "$@"; }

run init
run tenant add acme
printf '\n$ echo {...token response...} | tokenvault put acme/spotify/alice\n'
echo '{"access_token":"BQD-example-access-token","refresh_token":"AQC-example-refresh","expires_in":3600,"scope":"user-read-email","token_type":"Bearer"}' \
  | "$tv" put acme/spotify/alice
run get acme/spotify/alice
run list
run show acme/spotify/alice
run status
run audit
