//! The provider catalogue as data (SPEC §5.5): the built-in providers, overridden field by
//! field by `[providers.NAME]` tables of the config file, and the endpoints of one client
//! after its own overrides (`client set --token-url …`) and `{param}` templating.
//!
//! Owns: what a provider is. Must not: make HTTP calls or touch the vault.

use crate::config::{Config, ProviderConfig};
use crate::error::{Error, Result};
use crate::vault::records::ClientRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
    /// Public client: `client_id` in the body, no secret.
    None,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "basic" | "client_secret_basic" => Ok(ClientAuth::Basic),
            "post" | "client_secret_post" => Ok(ClientAuth::Post),
            "none" => Ok(ClientAuth::None),
            _ => Err(Error::Config(format!(
                "client_auth {s:?} is not one of basic, post, none; fix the provider table"
            ))),
        }
    }
}

/// What refreshing a connection of this provider means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OAuth 2.0 token endpoint with `grant_type=refresh_token`.
    OAuth2,
    /// A personal access token: never refreshed, only validated.
    Pat,
    /// Apple Music user tokens: validated by the Apple module (SPEC §7), never refreshed.
    AppleMusic,
}

/// One provider after built-in defaults and config overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub builtin: bool,
    pub token_url: Option<String>,
    pub authorization_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub revocation_url: Option<String>,
    /// A GET with the access token (`Authorization: Bearer`) that answers 2xx while the
    /// token is valid: what `tokenvault test` calls, and what "refreshing" a PAT means.
    pub validation_url: Option<String>,
    pub client_auth: ClientAuth,
    pub default_scopes: Vec<String>,
    pub scope_separator: String,
    pub default_lifetime_secs: u64,
    pub refresh_buffer_secs: u64,
    /// How long a refresh token lives when the response does not say
    /// (`refresh_token_expires_in`), for the expiry warning of SPEC §5.3; `None`: unknown.
    #[serde(default)]
    pub refresh_token_lifetime_secs: Option<u64>,
    pub token_params: BTreeMap<String, String>,
    pub authorization_params: BTreeMap<String, String>,
}

pub const DEFAULT_LIFETIME_SECS: u64 = 3600;
pub const DEFAULT_BUFFER_SECS: u64 = 300;

fn base(name: &str, kind: ProviderKind) -> Provider {
    Provider {
        name: name.into(),
        kind,
        builtin: true,
        token_url: None,
        authorization_url: None,
        device_authorization_url: None,
        revocation_url: None,
        validation_url: None,
        client_auth: ClientAuth::Post,
        default_scopes: Vec::new(),
        scope_separator: " ".into(),
        default_lifetime_secs: DEFAULT_LIFETIME_SECS,
        refresh_buffer_secs: DEFAULT_BUFFER_SECS,
        refresh_token_lifetime_secs: None,
        token_params: BTreeMap::new(),
        authorization_params: BTreeMap::new(),
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// The built-in catalogue, in display order.
pub fn builtins() -> Vec<Provider> {
    let mut out = Vec::new();

    let mut p = base("spotify", ProviderKind::OAuth2);
    p.token_url = s("https://accounts.spotify.com/api/token");
    p.authorization_url = s("https://accounts.spotify.com/authorize");
    p.client_auth = ClientAuth::Basic;
    p.validation_url = s("https://api.spotify.com/v1/me");
    out.push(p);

    let mut p = base("google", ProviderKind::OAuth2);
    p.token_url = s("https://oauth2.googleapis.com/token");
    p.authorization_url = s("https://accounts.google.com/o/oauth2/v2/auth");
    p.device_authorization_url = s("https://oauth2.googleapis.com/device/code");
    p.revocation_url = s("https://oauth2.googleapis.com/revoke");
    // answers 400 `invalid_token` (not 401) for a token it does not accept
    p.validation_url = s("https://www.googleapis.com/oauth2/v3/tokeninfo");
    p.authorization_params = [
        ("access_type".to_owned(), "offline".to_owned()),
        ("prompt".to_owned(), "consent".to_owned()),
    ]
    .into();
    out.push(p);

    let mut p = base("discord", ProviderKind::OAuth2);
    p.token_url = s("https://discord.com/api/oauth2/token");
    p.authorization_url = s("https://discord.com/oauth2/authorize");
    p.revocation_url = s("https://discord.com/api/oauth2/token/revoke");
    p.validation_url = s("https://discord.com/api/users/@me");
    p.client_auth = ClientAuth::Post;
    p.default_lifetime_secs = 604_800;
    out.push(p);

    let mut p = base("microsoft", ProviderKind::OAuth2);
    p.token_url = s("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token");
    p.authorization_url = s("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/authorize");
    p.device_authorization_url =
        s("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/devicecode");
    p.default_scopes = vec!["offline_access".into()];
    p.validation_url = s("https://graph.microsoft.com/v1.0/me");
    // Entra ID refresh tokens last 90 days (24 h for single-page apps), and the token
    // response does not say so.
    p.refresh_token_lifetime_secs = Some(90 * 86_400);
    out.push(p);

    let mut p = base("github", ProviderKind::Pat);
    p.validation_url = s("https://api.github.com/user");
    p.client_auth = ClientAuth::None;
    // A PAT carries no lifetime; "due" means "validate again".
    p.default_lifetime_secs = 86_400;
    out.push(p);

    let mut p = base("apple-music", ProviderKind::AppleMusic);
    p.client_auth = ClientAuth::None;
    p.default_lifetime_secs = 3600;
    p.refresh_buffer_secs = 0;
    out.push(p);

    out.push(base("generic", ProviderKind::OAuth2));
    out
}

fn apply(p: &mut Provider, c: &ProviderConfig) -> Result<()> {
    macro_rules! set {
        ($f:ident) => {
            if let Some(v) = &c.$f {
                p.$f = Some(v.clone());
            }
        };
    }
    set!(token_url);
    set!(authorization_url);
    set!(device_authorization_url);
    set!(revocation_url);
    set!(validation_url);
    if let Some(a) = &c.client_auth {
        p.client_auth = ClientAuth::parse(a)?;
    }
    if let Some(v) = &c.default_scopes {
        p.default_scopes = v.clone();
    }
    if let Some(v) = &c.scope_separator {
        p.scope_separator = v.clone();
    }
    if let Some(v) = c.default_lifetime_secs {
        if v == 0 {
            return Err(Error::Config(format!(
                "provider {}: default_lifetime_secs must be positive",
                p.name
            )));
        }
        p.default_lifetime_secs = v;
    }
    if let Some(v) = c.refresh_buffer_secs {
        p.refresh_buffer_secs = v;
    }
    if let Some(v) = c.refresh_token_lifetime_secs {
        // 0 turns a built-in default off (lifetime unknown)
        p.refresh_token_lifetime_secs = (v > 0).then_some(v);
    }
    if let Some(v) = &c.token_params {
        p.token_params.extend(v.clone());
    }
    if let Some(v) = &c.authorization_params {
        p.authorization_params.extend(v.clone());
    }
    Ok(())
}

/// The whole catalogue: built-ins overridden by the config, plus custom providers.
pub fn catalogue(config: &Config) -> Result<Vec<Provider>> {
    let mut all = builtins();
    // Apple Music user tokens are "due" for validation every `[apple_music]
    // validate_interval_secs` (SPEC §7, default hourly).
    if let Some(secs) = config.apple_music.validate_interval_secs
        && let Some(p) = all.iter_mut().find(|p| p.kind == ProviderKind::AppleMusic)
    {
        p.default_lifetime_secs = secs.max(60);
    }
    for (name, c) in &config.providers {
        crate::names::validate_provider(name)
            .map_err(|e| Error::Config(format!("[providers.{name}]: {e}")))?;
        match all.iter_mut().find(|p| &p.name == name) {
            Some(p) => apply(p, c)?,
            None => {
                if c.token_url.is_none() {
                    return Err(Error::Config(format!(
                        "[providers.{name}] needs token_url (it is not a built-in provider)"
                    )));
                }
                let mut p = base(name, ProviderKind::OAuth2);
                p.builtin = false;
                apply(&mut p, c)?;
                all.push(p);
            }
        }
    }
    Ok(all)
}

/// The provider named `name`. A name in neither the built-ins nor the config is a generic
/// OAuth 2.0 provider whose endpoints must come from the client (`client set --token-url`).
pub fn lookup(config: &Config, name: &str) -> Result<Provider> {
    Ok(find(&catalogue(config)?, name))
}

/// `lookup` in a catalogue already built (the `Engine` keeps one per configuration).
pub fn find(all: &[Provider], name: &str) -> Provider {
    if let Some(p) = all.iter().find(|p| p.name == name) {
        return p.clone();
    }
    let mut p = base(name, ProviderKind::OAuth2);
    p.builtin = false;
    p
}

/// Edit distance (Levenshtein) between two short names, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known name nearest to `name`, when it is close enough to be a typo of it (at most
/// a third of its letters differ, and at least one may).
pub fn nearest<'a>(names: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    names
        .into_iter()
        .map(|n| (distance(n, name), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// The provider `name` when the catalogue `all` knows it (a built-in or a
/// `[providers.NAME]` table of the config). Otherwise a not-found error that lists the
/// known providers, suggests the nearest one, and says how to add a custom provider: an
/// unknown provider is refused where it is typed (`put`, `client set`, `connect`) rather
/// than failing at the first refresh an hour later. Only a syntactically valid name is
/// named in the message.
pub fn known(all: &[Provider], name: &str) -> Result<Provider> {
    crate::names::validate_provider(name)?;
    if let Some(p) = all.iter().find(|p| p.name == name) {
        return Ok(p.clone());
    }
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    let hint = match nearest(names.iter().copied(), name) {
        Some(n) => format!("did you mean {n}? "),
        None => String::new(),
    };
    Err(Error::NotFound {
        what: "provider",
        name: format!(
            "{name} ({hint}known providers: {}). A custom provider needs a [providers.{name}] table with token_url in the config file (then SIGHUP the daemon); `tokenvault provider list` shows the catalogue",
            names.join(", ")
        ),
    })
}

/// The endpoints and parameters one client uses: the provider's, overridden by the
/// client's, with `{param}` placeholders filled from the client's `--param`s.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub token_url: Option<String>,
    pub authorization_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub revocation_url: Option<String>,
    pub validation_url: Option<String>,
}

/// Fills `{name}` placeholders from `params`; a placeholder without a value is a
/// configuration error naming the missing `--param`.
pub fn template(url: &str, params: &BTreeMap<String, String>, provider: &str) -> Result<String> {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(Error::Config(format!(
                "provider {provider}: unbalanced '{{' in URL {url}"
            )));
        };
        let key = &after[..end];
        let value = params.get(key).ok_or_else(|| {
            Error::Config(format!(
                "provider {provider} needs the client parameter {key}: run `tokenvault client set TENANT {provider} --client-id … --param {key}=VALUE`"
            ))
        })?;
        // A parameter is a path segment or query value: refuse anything that would change
        // the URL's shape.
        if value.is_empty()
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(Error::Config(format!(
                "client parameter {key} of provider {provider} must be letters, digits, '-', '.' or '_'"
            )));
        }
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Provider {
    /// When a refresh token received at `now` expires: what the response said, else this
    /// provider's default lifetime, else unknown.
    pub fn refresh_expiry(&self, now: i64, stated: Option<i64>) -> Option<i64> {
        stated.or_else(|| {
            self.refresh_token_lifetime_secs
                .map(|s| now.saturating_add(s as i64))
        })
    }

    pub fn endpoints(&self, client: Option<&ClientRecord>) -> Result<Endpoints> {
        let empty = BTreeMap::new();
        let params = client.map(|c| &c.params).unwrap_or(&empty);
        let pick = |own: Option<&String>, ours: &Option<String>| -> Result<Option<String>> {
            own.or(ours.as_ref())
                .map(|u| template(u, params, &self.name))
                .transpose()
        };
        Ok(Endpoints {
            token_url: pick(client.and_then(|c| c.token_url.as_ref()), &self.token_url)?,
            authorization_url: pick(
                client.and_then(|c| c.authorization_url.as_ref()),
                &self.authorization_url,
            )?,
            device_authorization_url: pick(
                client.and_then(|c| c.device_authorization_url.as_ref()),
                &self.device_authorization_url,
            )?,
            revocation_url: pick(
                client.and_then(|c| c.revocation_url.as_ref()),
                &self.revocation_url,
            )?,
            // A PAT has no token endpoint, so its client's `--token-url` names the
            // validation endpoint; for OAuth providers it is the token endpoint and never
            // a validation URL (that comes from the catalogue: `validation_url`).
            validation_url: pick(
                client
                    .filter(|_| self.kind == ProviderKind::Pat)
                    .and_then(|c| c.token_url.as_ref()),
                &self.validation_url,
            )?,
        })
    }

    /// Scopes joined with the provider's separator; the defaults when none are asked for.
    pub fn scope_string(&self, asked: &[String]) -> Option<String> {
        let scopes: Vec<&str> = if asked.is_empty() {
            self.default_scopes.iter().map(String::as_str).collect()
        } else {
            let mut v: Vec<&str> = asked.iter().map(String::as_str).collect();
            for d in &self.default_scopes {
                if !v.contains(&d.as_str()) {
                    v.push(d);
                }
            }
            v
        };
        (!scopes.is_empty()).then(|| scopes.join(&self.scope_separator))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_providers_are_refused_with_the_nearest_name() {
        let all = catalogue(&Config::default()).unwrap();
        assert_eq!(known(&all, "spotify").unwrap().name, "spotify");
        for (typo, want) in [
            ("spotfy", Some("spotify")),
            ("spotifyy", Some("spotify")),
            ("gogle", Some("google")),
            ("githb", Some("github")),
            ("microsfot", Some("microsoft")),
            ("apple_music", Some("apple-music")),
            ("acme", None),
            ("x", None),
        ] {
            let e = known(&all, typo).unwrap_err();
            assert_eq!(e.exit_code(), 4, "{e}");
            let m = e.to_string();
            assert!(m.contains("known providers: spotify, google"), "{m}");
            assert!(m.contains(&format!("[providers.{typo}]")), "{m}");
            match want {
                Some(w) => assert!(m.contains(&format!("did you mean {w}?")), "{m}"),
                None => assert!(!m.contains("did you mean"), "{m}"),
            }
        }
        // a name that is not a provider name at all is not quoted back
        let e = known(&all, "Sp0t!fy <script>").unwrap_err();
        assert!(!e.to_string().contains("<script>"), "{e}");
        // a custom provider of the config is known
        let c =
            Config::parse("[providers.acme]\ntoken_url = \"https://acme.example/t\"\n").unwrap();
        assert!(known(&catalogue(&c).unwrap(), "acme").is_ok());
    }

    #[test]
    fn validation_urls_of_the_builtins_and_the_config() {
        let c = Config::default();
        for (name, url) in [
            ("spotify", "https://api.spotify.com/v1/me"),
            ("google", "https://www.googleapis.com/oauth2/v3/tokeninfo"),
            ("microsoft", "https://graph.microsoft.com/v1.0/me"),
            ("discord", "https://discord.com/api/users/@me"),
            ("github", "https://api.github.com/user"),
        ] {
            assert_eq!(
                lookup(&c, name).unwrap().validation_url.as_deref(),
                Some(url)
            );
        }
        let c = Config::parse(
            "[providers.spotify]\nvalidation_url = \"http://127.0.0.1:9/me\"\n[providers.acme]\ntoken_url = \"https://acme.example/t\"\nvalidation_url = \"https://acme.example/me\"\n",
        )
        .unwrap();
        let sp = lookup(&c, "spotify").unwrap();
        assert_eq!(sp.validation_url.as_deref(), Some("http://127.0.0.1:9/me"));
        // an OAuth client's --token-url is its token endpoint, never its validation URL
        let client = ClientRecord {
            client_id: "id".into(),
            token_url: Some("http://127.0.0.1:9/token".into()),
            ..Default::default()
        };
        assert_eq!(
            sp.endpoints(Some(&client))
                .unwrap()
                .validation_url
                .as_deref(),
            Some("http://127.0.0.1:9/me")
        );
        // a PAT's is (it has no token endpoint)
        let gh = lookup(&c, "github").unwrap();
        assert_eq!(
            gh.endpoints(Some(&client))
                .unwrap()
                .validation_url
                .as_deref(),
            Some("http://127.0.0.1:9/token")
        );
        assert_eq!(
            lookup(&c, "acme").unwrap().validation_url.as_deref(),
            Some("https://acme.example/me")
        );
    }

    #[test]
    fn refresh_token_lifetimes_default_and_override() {
        let c = Config::default();
        let ms = lookup(&c, "microsoft").unwrap();
        assert_eq!(ms.refresh_token_lifetime_secs, Some(90 * 86_400));
        assert_eq!(ms.refresh_expiry(1000, None), Some(1000 + 90 * 86_400));
        assert_eq!(
            ms.refresh_expiry(1000, Some(5000)),
            Some(5000),
            "stated wins"
        );
        assert_eq!(
            lookup(&c, "spotify").unwrap().refresh_expiry(1000, None),
            None
        );
        let c = Config::parse(
            "[providers.microsoft]\nrefresh_token_lifetime_secs = 0\n[providers.spotify]\nrefresh_token_lifetime_secs = 86400\n",
        )
        .unwrap();
        assert_eq!(
            lookup(&c, "microsoft").unwrap().refresh_token_lifetime_secs,
            None
        );
        assert_eq!(
            lookup(&c, "spotify").unwrap().refresh_token_lifetime_secs,
            Some(86_400)
        );
    }

    #[test]
    fn builtins_have_their_auth_methods() {
        let c = Config::default();
        assert_eq!(
            lookup(&c, "spotify").unwrap().client_auth,
            ClientAuth::Basic
        );
        assert_eq!(lookup(&c, "discord").unwrap().client_auth, ClientAuth::Post);
        assert_eq!(lookup(&c, "github").unwrap().kind, ProviderKind::Pat);
        assert_eq!(
            lookup(&c, "apple-music").unwrap().kind,
            ProviderKind::AppleMusic
        );
        let unknown = lookup(&c, "acme").unwrap();
        assert!(!unknown.builtin && unknown.token_url.is_none());
    }

    #[test]
    fn config_overrides_field_by_field_and_adds_custom() {
        let c = Config::parse(
            r#"
            [providers.spotify]
            token_url = "http://127.0.0.1:9/token"
            refresh_buffer_secs = 60
            [providers.acme]
            token_url = "https://acme.example/token"
            client_auth = "basic"
            scope_separator = ","
            default_scopes = ["a", "b"]
            "#,
        )
        .unwrap();
        let sp = lookup(&c, "spotify").unwrap();
        assert_eq!(sp.token_url.as_deref(), Some("http://127.0.0.1:9/token"));
        assert_eq!(sp.refresh_buffer_secs, 60);
        // untouched fields keep the built-in values
        assert_eq!(sp.client_auth, ClientAuth::Basic);
        assert_eq!(
            sp.authorization_url.as_deref(),
            Some("https://accounts.spotify.com/authorize")
        );
        let acme = lookup(&c, "acme").unwrap();
        assert!(!acme.builtin);
        assert_eq!(acme.scope_string(&[]).as_deref(), Some("a,b"));
        assert!(
            catalogue(&Config::parse("[providers.x]\nclient_auth = \"post\"").unwrap()).is_err()
        );
        assert!(
            catalogue(
                &Config::parse("[providers.x]\ntoken_url = \"u\"\nclient_auth = \"jwt\"").unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn microsoft_tenant_is_templated_from_client_params() {
        let ms = lookup(&Config::default(), "microsoft").unwrap();
        let mut client = ClientRecord {
            client_id: "id".into(),
            ..Default::default()
        };
        let e = ms.endpoints(Some(&client)).unwrap_err();
        assert!(e.to_string().contains("--param tenant_id="), "{e}");
        client
            .params
            .insert("tenant_id".into(), "contoso.onmicrosoft.com".into());
        let ep = ms.endpoints(Some(&client)).unwrap();
        assert_eq!(
            ep.token_url.as_deref(),
            Some("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token")
        );
        client.params.insert("tenant_id".into(), "a/../b".into());
        assert!(ms.endpoints(Some(&client)).is_err());
        client.params.insert("tenant_id".into(), "common".into());
        client.token_url = Some("http://127.0.0.1:1/{tenant_id}/t".into());
        assert_eq!(
            ms.endpoints(Some(&client)).unwrap().token_url.as_deref(),
            Some("http://127.0.0.1:1/common/t")
        );
    }
}
