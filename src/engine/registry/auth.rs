//! Registry credentials: where they come from (an explicit pair or token, `REGISTRY_AUTH_FILE`, docker's
//! `config.json` with its credential helpers, containers' `auth.json`), first found wins; and the
//! `WWW-Authenticate` challenge a registry answers with. Secrets never reach an error message.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;

use crate::engine::document;
use crate::engine::error::{Error, Result};

/// Docker Hub's key in docker's `config.json`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry. `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password (or personal access token used as a password).
    Basic {
        /// The user name.
        user: String,
        /// The password or access token.
        password: String,
    },
    /// A bearer token sent as is (`ocitar.Token`).
    Token(String),
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token realm.
    Identity {
        /// The user name (may be empty).
        user: String,
        /// The refresh token.
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { user, .. } => write!(f, "Basic({user:?}, ***)"),
            Credential::Token(_) => f.write_str("Token(***)"),
            Credential::Identity { user, .. } => write!(f, "Identity({user:?}, ***)"),
        }
    }
}

impl Credential {
    /// The `Authorization: Basic …` value of a user and password.
    pub fn basic_header(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The key a host has in credential files: Docker Hub's historical URL, else the host itself.
pub fn config_key(host: &str) -> &str {
    if host == "docker.io" {
        DOCKER_HUB_KEY
    } else {
        host
    }
}

/// A credential-file key reduced to its host (`https://r.example/v1/` → `r.example`), Docker Hub's
/// names to `docker.io`.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        other => other,
    }
}

/// The credentials for `host`, first found wins: `explicit`; the file `REGISTRY_AUTH_FILE` names;
/// `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`): `credHelpers[host]`, `credsStore`,
/// `auths`; containers' `auth.json`; else `None` (anonymous).
///
/// # Errors
/// [`Error::Authentication`] when a credential file is not valid JSON or a helper fails for a reason
/// other than "not found" (the message names the file or helper, never a secret).
pub fn lookup(host: &str, explicit: Option<&Credential>) -> Result<Option<Credential>> {
    if let Some(c) = explicit {
        return Ok(Some(c.clone()));
    }
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        if let Some(c) = from_auths_file(Path::new(&p), host)? {
            return Ok(Some(c));
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let docker_dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".docker")));
    if let Some(dir) = docker_dir {
        if let Some(c) = from_docker_config(&dir.join("config.json"), host)? {
            return Ok(Some(c));
        }
    }
    let mut containers = Vec::new();
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
        containers.push(PathBuf::from(run).join("containers/auth.json"));
    }
    if let Some(h) = &home {
        containers.push(h.join(".config/containers/auth.json"));
    }
    for p in containers {
        if let Some(c) = from_auths_file(&p, host)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Authentication {
        status: 0,
        code: String::new(),
        url: path.display().to_string(),
        message: format!("credential file: {reason}"),
    }
}

/// Read a credential file through [`document`]'s bounded read and parser; `None` when it does not
/// exist.
fn read_json(path: &Path) -> Result<Option<Value>> {
    let Some(file) = crate::engine::fs::open_if_exists(path)? else {
        return Ok(None);
    };
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let Some(bytes) = document::read_bounded(file, size).map_err(|e| Error::io(path, e))? else {
        return Err(file_error(path, document::over_size(size)));
    };
    // parse_json parses into a `Value`, whose errors give a position, never the text (a secret).
    document::parse_json(&bytes)
        .map(Some)
        .map_err(|reason| file_error(path, reason))
}

/// The `auths` entry for `host` of a docker `config.json` or containers `auth.json`.
fn from_auths(doc: &Value, host: &str, path: &Path) -> Result<Option<Credential>> {
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let Some(entry) = auths
        .iter()
        .find(|(k, _)| key_host(k) == host)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    let (mut user, mut password) = (String::new(), String::new());
    if let Some(a) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| file_error(path, format!("auths[{host:?}].auth is not base64")))?;
        let text = String::from_utf8(raw)
            .map_err(|_| file_error(path, format!("auths[{host:?}].auth is not UTF-8")))?;
        let (u, p) = text.split_once(':').ok_or_else(|| {
            file_error(path, format!("auths[{host:?}].auth is not user:password"))
        })?;
        (user, password) = (u.to_string(), p.to_string());
    }
    if let Some(t) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credential::Identity {
            user,
            token: t.to_string(),
        }));
    }
    if user.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic { user, password }))
}

fn from_auths_file(path: &Path, host: &str) -> Result<Option<Credential>> {
    match read_json(path)? {
        Some(doc) => from_auths(&doc, host, path),
        None => Ok(None),
    }
}

fn from_docker_config(path: &Path, host: &str) -> Result<Option<Credential>> {
    let Some(doc) = read_json(path)? else {
        return Ok(None);
    };
    let helper = doc
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|m| m.iter().find(|(k, _)| key_host(k) == host))
        .and_then(|(_, v)| v.as_str());
    if let Some(h) = helper {
        if let Some(c) = from_helper(h, host)? {
            return Ok(Some(c));
        }
    }
    if let Some(store) = doc.get("credsStore").and_then(Value::as_str) {
        if let Some(c) = from_helper(store, host)? {
            return Ok(Some(c));
        }
    }
    from_auths(&doc, host, path)
}

/// Ask `docker-credential-<helper> get` for `host`; `None` when it has no credentials for it.
fn from_helper(helper: &str, host: &str) -> Result<Option<Credential>> {
    let program = format!("docker-credential-{helper}");
    let fail = |message: String| Error::Authentication {
        status: 0,
        code: String::new(),
        url: program.clone(),
        message,
    };
    if helper.is_empty() || helper.contains(['/', '\\']) {
        return Err(fail("credential helper name is not a plain name".into()));
    }
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail("credential helper not found on PATH".into()))
        }
        Err(e) => return Err(Error::io(&program, e)),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its output below.
        let _ = stdin.write_all(config_key(host).as_bytes());
    }
    // Read as a document is read: a helper printing without end is stopped at the document limit.
    let printed = match child.stdout.take() {
        Some(stdout) => document::read_bounded(stdout, 0).map_err(|e| Error::io(&program, e))?,
        None => Some(Vec::new()),
    };
    let Some(stdout) = printed else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail(format!(
            "credential helper printed more than {} bytes",
            document::MAX_DOCUMENT_BYTES
        )));
    };
    let status = child.wait().map_err(|e| Error::io(&program, e))?;
    if !status.success() {
        let said = String::from_utf8_lossy(&stdout).to_lowercase();
        if said.contains("credentials not found") || said.trim().is_empty() {
            return Ok(None);
        }
        return Err(fail(format!("credential helper failed ({status})")));
    }
    let v = document::parse_document(&stdout).map_err(|reason| {
        fail(format!(
            "credential helper printed no JSON object ({reason})"
        ))
    })?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (user, secret) = (field("Username"), field("Secret"));
    if secret.is_empty() {
        return Ok(None);
    }
    if user == "<token>" {
        return Ok(Some(Credential::Identity {
            user: String::new(),
            token: secret,
        }));
    }
    Ok(Some(Credential::Basic {
        user,
        password: secret,
    }))
}

/// A `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Answer with `Authorization: Basic`.
    Basic,
    /// Fetch a token from `realm` for `service`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter of token requests.
        service: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header (`Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
    })
}

/// `key="value", key=value` pairs; quoted values may hold commas.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => match q.find('"') {
                Some(end) => (
                    q.get(..end).unwrap_or_default(),
                    q.get(end + 1..).unwrap_or_default(),
                ),
                None => (q, ""),
            },
            None => match after.find(',') {
                Some(end) => (
                    after.get(..end).unwrap_or_default(),
                    after.get(end..).unwrap_or_default(),
                ),
                None => (after, ""),
            },
        };
        out.insert(key, value.to_string());
        rest = next.trim_start().trim_start_matches(',');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn config_keys_reduce_to_hosts() {
        assert_eq!(key_host(DOCKER_HUB_KEY), "docker.io");
        assert_eq!(key_host("https://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(key_host("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credential::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::Token("tok3n".into())).contains("tok3n"));
    }
}
