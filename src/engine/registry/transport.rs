//! HTTP to registries: one `ureq` agent (rustls, the system's roots plus `ca_file`, no response
//! decompression), the scheme chosen per host (plain HTTP only for loopback hosts or `insecure`), auth
//! driven by the `WWW-Authenticate` challenge with one cached token per host covering every scope of the
//! operation, and retries on connection errors, 408, 429 and 5xx honouring `Retry-After`.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::http::{self, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Body;

use super::auth::{self, Challenge, Credential};
use crate::engine::document;
use crate::engine::error::{Error, Result};

/// Attempts of one request on connection errors, 408, 429 and 5xx.
pub const ATTEMPTS: u32 = 3;
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The connection buffer blobs stream through (ureq's default is 128 KiB): downloads are received into
/// the input buffer of the agent for GET and HEAD and copied out of it, uploads are read into the output
/// buffer of the other agent and sent from it. 1 MiB takes a GiB in an eighth of the `recvfrom` /
/// `sendto` calls and wake-ups: measured on a loopback registry, 6–10 % less CPU for a save and a
/// quarter less system time for a load (benches/README.md). The other direction keeps the default.
const STREAM_BUFFER: usize = 1 << 20;
/// ureq's default connection buffer.
const SMALL_BUFFER: usize = 128 << 10;
/// Largest error body or token response read.
const SMALL_BODY: u64 = 1 << 20;

/// Where the system keeps its CA bundle (the first that exists is read).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Explicit credentials (else looked up per host).
    pub auth: Option<Credential>,
    /// PEM certificates trusted besides the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Plain HTTP and any certificate allowed for every host.
    pub insecure: bool,
}

struct Token {
    value: String,
    expires: Instant,
    scopes: BTreeSet<String>,
}

/// What is known of one host: its URL prefix, challenge, credentials and token.
struct Host {
    base: String,
    challenge: Option<Challenge>,
    credential: Option<Credential>,
    token: Mutex<Option<Token>>,
    scopes: Mutex<BTreeSet<String>>,
}

/// A request body.
pub enum Payload<'a> {
    /// No body.
    Empty,
    /// A small body in memory.
    Bytes(&'a [u8]),
    /// A stream of the given length, opened again for each attempt.
    Stream(&'a (dyn Fn() -> Result<Box<dyn Read + 'a>> + Sync), u64),
}

/// The registry client: shared by every worker of an operation.
pub struct Client {
    agent: ureq::Agent,
    plain_agent: ureq::Agent,
    options: Options,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

/// Whether plain HTTP may be used for `host` (`name[:port]`) without `insecure`.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The URL shown in errors: no query (upload state), never credentials (they travel in headers).
pub fn shown(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

fn load_certs(path: &Path, into: &mut Vec<Certificate<'static>>) -> Result<()> {
    let pem = crate::engine::fs::read(path)?;
    let before = into.len();
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(PemItem::Certificate(c)) = item {
            into.push(c);
        }
    }
    if into.len() == before {
        return Err(Error::InvalidArgument(format!(
            "ca_file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(())
}

/// An agent; `(input, output)` are its connections' buffer sizes.
fn agent(tls: TlsConfig, max_redirects: u32, (input, output): (usize, usize)) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .max_redirects(max_redirects)
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .accept_encoding("identity")
        .user_agent(concat!("ocitar/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .input_buffer_size(input)
        .output_buffer_size(output)
        .build()
        .new_agent()
}

impl Client {
    /// A client; reads the system's CA bundle and `options.ca_file`.
    ///
    /// # Errors
    /// [`Error::Io`] when `ca_file` cannot be read, [`Error::InvalidArgument`] when it holds no certificate.
    pub fn new(options: Options) -> Result<Client> {
        let mut certs = Vec::new();
        let bundle = std::env::var_os("SSL_CERT_FILE")
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
            .find(|p| crate::engine::fs::metadata(p).is_ok_and(|m| m.is_file()));
        if let Some(b) = bundle {
            // An unreadable system bundle falls back to the built-in roots below.
            let _ = load_certs(&b, &mut certs);
        }
        if let Some(ca) = &options.ca_file {
            load_certs(ca, &mut certs)?;
        }
        let roots = if certs.is_empty() {
            RootCerts::WebPki
        } else {
            RootCerts::Specific(Arc::new(certs))
        };
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .disable_verification(options.insecure)
            .build();
        Ok(Client {
            agent: agent(tls.clone(), 5, (STREAM_BUFFER, SMALL_BUFFER)),
            plain_agent: agent(tls, 0, (SMALL_BUFFER, STREAM_BUFFER)),
            options,
            hosts: Mutex::new(HashMap::new()),
        })
    }

    fn host(&self, host: &str) -> Option<Arc<Host>> {
        self.hosts.lock().ok()?.get(host).cloned()
    }

    /// Get ready to talk to `host` (`name[:port]`, the API host): find its scheme and challenge (once),
    /// its credentials, and add `scopes` (`repository:NAME:pull,push`) to the ones its token must cover.
    ///
    /// # Errors
    /// [`Error::Registry`] when the host cannot be reached (or plain HTTP would be needed and is not
    /// allowed); [`Error::Authentication`] for an unreadable credential file.
    pub fn prepare(&self, host: &str, scopes: &[String]) -> Result<()> {
        if self.host(host).is_none() {
            let state = self.probe(host)?;
            if let Ok(mut hosts) = self.hosts.lock() {
                hosts.entry(host.to_string()).or_insert(Arc::new(state));
            }
        }
        let h = self.known(host)?;
        if let Ok(mut s) = h.scopes.lock() {
            s.extend(scopes.iter().cloned());
        }
        Ok(())
    }

    fn known(&self, host: &str) -> Result<Arc<Host>> {
        self.host(host).ok_or_else(|| Error::Registry {
            status: 0,
            code: String::new(),
            url: host.to_string(),
            message: "host not prepared".into(),
            moved: Vec::new(),
        })
    }

    /// `GET /v2/` over HTTPS, then (loopback or insecure only) plain HTTP.
    fn probe(&self, host: &str) -> Result<Host> {
        let plain_ok = self.options.insecure || is_loopback(host);
        let mut last = None;
        for scheme in ["https", "http"] {
            if scheme == "http" && !plain_ok {
                break;
            }
            let base = format!("{scheme}://{host}");
            let url = format!("{base}/v2/");
            // HTTPS answered by a plain-HTTP server is a protocol error: no retry when HTTP may follow.
            let attempts = if scheme == "https" && plain_ok {
                1
            } else {
                ATTEMPTS
            };
            match self.retrying_n(&url, attempts, || self.plain_agent.get(&url).call()) {
                // A TLS server answers plain HTTP with 400: the HTTPS error says more.
                Ok(resp) if scheme == "http" && resp.status().as_u16() == 400 && last.is_some() => {
                }
                Ok(resp) => {
                    let challenge = match resp.status().as_u16() {
                        401 => resp
                            .headers()
                            .get("www-authenticate")
                            .and_then(|v| v.to_str().ok())
                            .and_then(auth::parse_challenge),
                        _ => None,
                    };
                    let api_host = host;
                    let credential =
                        auth::lookup(registry_key(api_host), self.options.auth.as_ref())?;
                    return Ok(Host {
                        base,
                        challenge,
                        credential,
                        token: Mutex::new(None),
                        scopes: Mutex::new(BTreeSet::new()),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(Error::Registry { url, message, .. }) if !plain_ok => Error::Registry {
                status: 0,
                code: String::new(),
                url,
                message: format!(
                    "{message} (plain HTTP is used only for loopback hosts or with insecure=True)"
                ),
                moved: Vec::new(),
            },
            Some(e) => e,
            None => unreachable_host(host),
        })
    }

    /// The URL of `path` (starting `/v2/`) on `host`, or `path` itself when it is absolute (a `Location`).
    ///
    /// # Errors
    /// As [`Client::prepare`] when the host was not prepared.
    pub fn url(&self, host: &str, path: &str) -> Result<String> {
        if path.starts_with("http://") || path.starts_with("https://") {
            return Ok(path.to_string());
        }
        Ok(format!("{}{path}", self.known(host)?.base))
    }

    /// Send a request to `host` with its auth, retrying; on a 401 fetch a new token once and send again.
    /// Redirects are followed for GET and HEAD only. Returns any response that is not an auth failure.
    ///
    /// # Errors
    /// [`Error::Registry`] when every attempt failed to connect or answered 408, 429 or 5xx;
    /// [`Error::Authentication`] for a 401 or 403 that a fresh token does not cure.
    pub fn send(
        &self,
        host: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        payload: &Payload<'_>,
    ) -> Result<Response<Body>> {
        let h = self.known(host)?;
        let url = self.url(host, path)?;
        let mut refreshed = false;
        loop {
            let authz = self.authorization(&h, refreshed)?;
            // A dropped upload is not sent again to the same session: the caller starts a new one.
            let attempts = match payload {
                Payload::Stream(..) => 1,
                _ => ATTEMPTS,
            };
            let resp = self.retrying_n(&url, attempts, || {
                let mut b = http::Request::builder().method(method).uri(&url);
                for (k, v) in headers {
                    b = b.header(*k, *v);
                }
                if let Some(a) = &authz {
                    b = b.header("authorization", a.as_str());
                }
                let agent = if method == "GET" || method == "HEAD" {
                    &self.agent
                } else {
                    &self.plain_agent
                };
                match payload {
                    Payload::Empty => agent.run(b.body(()).map_err(ureq::Error::from)?),
                    Payload::Bytes(bytes) => {
                        let b = b.header("content-length", bytes.len());
                        agent.run(b.body(*bytes).map_err(ureq::Error::from)?)
                    }
                    Payload::Stream(open, len) => {
                        let mut r =
                            open().map_err(|e| ureq::Error::Io(std::io::Error::other(e)))?;
                        let b = b.header("content-length", *len);
                        let body = ureq::SendBody::from_reader(&mut r);
                        agent.run(b.body(body).map_err(ureq::Error::from)?)
                    }
                }
            })?;
            let status = resp.status().as_u16();
            if status == 401 && !refreshed && matches!(h.challenge, Some(Challenge::Bearer { .. }))
            {
                refreshed = true;
                continue;
            }
            if status == 401 || status == 403 {
                let (code, message) = error_body(resp);
                return Err(Error::Authentication {
                    status,
                    code,
                    url: shown(&url),
                    message: if message.is_empty() {
                        auth_hint(&h)
                    } else {
                        format!("{message}; {}", auth_hint(&h))
                    },
                });
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` value for a request to `h`; a new token when `refresh` or when the cached one
    /// expired or does not cover the scopes.
    fn authorization(&self, h: &Host, refresh: bool) -> Result<Option<String>> {
        match (&h.challenge, &h.credential) {
            (_, Some(Credential::Token(t))) => Ok(Some(format!("Bearer {t}"))),
            (Some(Challenge::Basic), Some(Credential::Basic { user, password })) => {
                Ok(Some(Credential::basic_header(user, password)))
            }
            (Some(Challenge::Bearer { realm, service }), cred) => {
                let scopes = h.scopes.lock().map(|s| s.clone()).unwrap_or_default();
                let mut slot = h.token.lock().map_err(|_| unreachable_host(&h.base))?;
                let fresh = slot.as_ref().is_some_and(|t| {
                    !refresh && t.expires > Instant::now() && scopes.is_subset(&t.scopes)
                });
                if !fresh {
                    let (value, ttl) =
                        self.fetch_token(realm, service.as_deref(), &scopes, cred.as_ref())?;
                    *slot = Some(Token {
                        value,
                        expires: Instant::now() + ttl,
                        scopes,
                    });
                }
                Ok(slot.as_ref().map(|t| format!("Bearer {}", t.value)))
            }
            _ => Ok(None),
        }
    }

    /// A token from the realm: GET with Basic credentials, or the OAuth2 POST for a refresh token.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &BTreeSet<String>,
        cred: Option<&Credential>,
    ) -> Result<(String, Duration)> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        let resp = match cred {
            Some(Credential::Identity { token, .. }) => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "ocitar"),
                ]);
                let body = encode_query(&form);
                self.retrying(realm, || {
                    self.plain_agent
                        .post(realm)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .send(body.as_bytes())
                })?
            }
            _ => {
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{sep}{}", encode_query(&query));
                self.retrying(realm, || {
                    let mut r = self.plain_agent.get(&url);
                    if let Some(Credential::Basic { user, password }) = cred {
                        r = r.header("authorization", Credential::basic_header(user, password));
                    }
                    r.call()
                })?
            }
        };
        token_of(resp, realm)
    }

    /// Run `call` up to [`ATTEMPTS`] times while it fails to connect or answers 408, 429 or 5xx.
    fn retrying(
        &self,
        url: &str,
        call: impl Fn() -> std::result::Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>> {
        self.retrying_n(url, ATTEMPTS, call)
    }

    /// Run `call` up to `attempts` times, as [`Client::retrying`].
    fn retrying_n(
        &self,
        url: &str,
        attempts: u32,
        call: impl Fn() -> std::result::Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = match call() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !(status == 408 || status == 429 || status >= 500) {
                        return Ok(resp);
                    }
                    if attempt >= attempts {
                        return Err(status_error(resp, url));
                    }
                    retry_after(&resp).unwrap_or_else(|| backoff(attempt))
                }
                Err(e) => {
                    if attempt >= attempts || !is_transient(&e) {
                        return Err(transport_error(&e, url));
                    }
                    backoff(attempt)
                }
            };
            std::thread::sleep(wait);
        }
    }
}

/// The token and its lifetime from a token realm's answer, read through [`body_json`].
fn token_of(resp: Response<Body>, realm: &str) -> Result<(String, Duration)> {
    let status = resp.status().as_u16();
    if status != 200 {
        let (code, message) = error_body(resp);
        return Err(Error::Authentication {
            status,
            code,
            url: shown(realm),
            message: format!(
                "token request refused{}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ),
        });
    }
    let v = body_json(resp, SMALL_BODY).map_err(|e| Error::Authentication {
        status,
        code: String::new(),
        url: shown(realm),
        message: format!("token response refused: {e}"),
    })?;
    let token = v
        .get("token")
        .or_else(|| v.get("access_token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Authentication {
            status,
            code: String::new(),
            url: shown(realm),
            message: "token response has no token".into(),
        })?;
    // Refreshed a little before the registry would refuse it.
    let ttl = v
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(60)
        .max(10);
    Ok((token.to_string(), Duration::from_secs(ttl - ttl / 10)))
}

/// The host whose credentials a request to `api_host` uses (Docker Hub's API host is `docker.io`'s).
fn registry_key(api_host: &str) -> &str {
    if api_host == "registry-1.docker.io" {
        "docker.io"
    } else {
        api_host
    }
}

fn auth_hint(h: &Host) -> String {
    match &h.credential {
        None => "no credentials found for this registry (auth=, REGISTRY_AUTH_FILE, docker config.json, containers auth.json)".into(),
        Some(_) => "the credentials were refused".into(),
    }
}

fn unreachable_host(host: &str) -> Error {
    Error::Registry {
        status: 0,
        code: String::new(),
        url: shown(host),
        message: "unreachable".into(),
        moved: Vec::new(),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(6))
}

fn retry_after(resp: &Response<Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

/// A transport failure as a [`Error::Registry`] with status 0.
pub fn transport_error(e: &ureq::Error, url: &str) -> Error {
    Error::Registry {
        status: 0,
        code: String::new(),
        url: shown(url),
        message: e.to_string(),
        moved: Vec::new(),
    }
}

/// The OCI error body's first `code` and `message`, when there is one. A body that is not JSON gives
/// neither; one over [`SMALL_BODY`] or over a limit of [`document`] gives the reason as its message.
pub fn error_body(resp: Response<Body>) -> (String, String) {
    let v = match body_json(resp, SMALL_BODY) {
        Ok(v) => v,
        Err(BodyError::NotJson(_)) => return (String::new(), String::new()),
        Err(e) => return (String::new(), format!("error body refused: {e}")),
    };
    let first = v.get("errors").and_then(|e| e.get(0));
    let text = |k: &str| {
        first
            .and_then(|f| f.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("code"), text("message"))
}

/// Why a JSON response body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit read.
    TooLarge(u64),
    /// Over a limit of [`document`] (size, nesting, values, objects, annotations).
    Limit(String),
    /// Not JSON.
    NotJson(String),
    /// The connection failed.
    Transport(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(n) => write!(f, "response body over {n} bytes"),
            BodyError::Limit(r) | BodyError::NotJson(r) | BodyError::Transport(r) => f.write_str(r),
        }
    }
}

/// Read a JSON body of at most `limit` bytes (never more than a document's) and parse it through
/// [`document::parse_json`]: what a registry or token server answers obeys the limits every document
/// does, and memory stays bounded whatever it sends.
///
/// # Errors
/// The [`BodyError`].
pub fn body_json(resp: Response<Body>, limit: u64) -> std::result::Result<Value, BodyError> {
    let limit = limit.min(document::MAX_DOCUMENT_BYTES);
    let bytes = resp
        .into_body()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => BodyError::TooLarge(limit),
            e => BodyError::Transport(e.to_string()),
        })?;
    document::parse_json(&bytes).map_err(|r| {
        if r.starts_with("not valid JSON") {
            BodyError::NotJson(r)
        } else {
            BodyError::Limit(r)
        }
    })
}

/// A response that is not what was expected, as an error: [`Error::Authentication`] for 401/403, else
/// [`Error::Registry`] with the OCI error code.
pub fn status_error(resp: Response<Body>, url: &str) -> Error {
    let status = resp.status().as_u16();
    let reason = resp
        .status()
        .canonical_reason()
        .unwrap_or("unexpected status")
        .to_string();
    let (code, message) = error_body(resp);
    let message = if message.is_empty() { reason } else { message };
    if status == 401 || status == 403 {
        return Error::Authentication {
            status,
            code,
            url: shown(url),
            message,
        };
    }
    Error::Registry {
        status,
        code,
        url: shown(url),
        message,
        moved: Vec::new(),
    }
}

/// Read a body of at most `limit` bytes.
///
/// # Errors
/// [`Error::Registry`] when the connection fails or the body is larger.
pub fn read_limited(resp: Response<Body>, url: &str, limit: u64) -> Result<Vec<u8>> {
    resp.into_body()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => Error::Registry {
                status: 200,
                code: String::new(),
                url: shown(url),
                message: BodyError::TooLarge(limit).to_string(),
                moved: Vec::new(),
            },
            e => transport_error(&e, url),
        })
}

/// `k=v&k=v`, percent-encoded.
pub fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A header's value as text.
pub fn header<'r>(resp: &'r Response<Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "registry.example:5000",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode_query(&[("scope", "repository:a/b:pull,push"), ("service", "r s")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&service=r%20s"
        );
    }
}
