//! The HTTP client of the platform API (SPEC sections 4 and 5). The only code in the daemon
//! that speaks it; the shapes themselves come from `vpd-proto`.
//!
//! Every answer is checked before it is believed: bodies are capped, an HTML page (the app
//! URL given instead of the API) or truncated JSON is a clear error naming the endpoint, and
//! transport failures are told apart from refusals so callers know what to retry.

use crate::error::{Error, ErrorCode, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;
use url::Url;
use vpd_proto::pairing::{CreatePairingCode, PairingCodeCreated, PairingStatus};
use vpd_proto::runtime::RuntimeCredential;
use vpd_proto::{paths, ApiError, Health};

const MAX_BODY: usize = 1024 * 1024;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Could not reach the server, timed out, or a 5xx: try again later.
    Transient(String),
    /// The server refused with a 4xx and an error body.
    Refused { status: u16, error: String, message: String },
    /// The answer was not the API's (HTML, malformed or truncated JSON, too large).
    Bad(String),
}

impl CallError {
    pub fn into_error(self) -> Error {
        match self {
            CallError::Transient(m) => Error::new(ErrorCode::ServerUnreachable, m),
            CallError::Refused { message, .. } => Error::new(ErrorCode::ServerRefused, message),
            CallError::Bad(m) => Error::new(ErrorCode::BadServerResponse, m),
        }
    }
}

/// Checks a platform or relay URL: `https`/`wss`, or plain `http`/`ws` only to a loopback host
/// or with `insecure_http`.
pub fn check_url(raw: &str, insecure_http: bool) -> Result<Url> {
    let url = Url::parse(raw.trim()).map_err(|e| Error::new(ErrorCode::InvalidArgument, format!("{raw:?} is not a URL: {e}")))?;
    let secure = match url.scheme() {
        "https" | "wss" => true,
        "http" | "ws" => false,
        other => return Err(Error::new(ErrorCode::InvalidArgument, format!("{raw}: unsupported scheme {other:?}; use https://"))),
    };
    let host = url.host().ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("{raw} has no host")))?;
    if !secure && !insecure_http && !is_loopback(&host) {
        return Err(Error::new(
            ErrorCode::InsecureUrl,
            format!("refusing plain {} to {host}: use https, or pass --insecure-http if you really mean it", url.scheme()),
        ));
    }
    Ok(url)
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// The one HTTP client configuration: the TLS of `crate::tls` (system roots, plus `ca_pem`),
/// the one proxy rule set of `crate::proxy` (not reqwest's own reading of the variables), no
/// redirects. The platform API and `vpd update` both use it.
fn http_client(ca_pem: Option<&str>) -> Result<reqwest::Client> {
    let tls = crate::tls::client_config(ca_pem)?;
    let proxies = crate::proxy::Proxies::current();
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .no_proxy()
        .proxy(reqwest::Proxy::custom(move |u| proxies.for_url(u)))
        .user_agent(format!("vpd/{}", crate::VERSION))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("HTTP client: {e}")))
}

/// GETs `url` with the one client configuration, reading at most `max` bytes (more is refused:
/// a source cannot fill the memory or the disk) and reporting `progress(bytes, max)`.
/// `Ok(None)` for a 404. `vpd update` fetches its manifest and its release with it.
pub async fn get_bounded(url: &Url, max: u64, timeout: Option<Duration>, progress: &mut dyn FnMut(u64, u64)) -> Result<Option<Vec<u8>>> {
    let http = http_client(None)?;
    let mut req = http.get(url.clone());
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    let mut resp = req.send().await.map_err(|e| {
        let why = if e.is_timeout() {
            "timed out".to_string()
        } else if let Some(tls) = tls_failure(&e) {
            format!("its certificate is not trusted ({tls})")
        } else if e.is_connect() {
            "could not connect (is it up, and is the URL right?)".to_string()
        } else {
            e.to_string()
        };
        Error::new(ErrorCode::ServerUnreachable, format!("{url}: {why}"))
    })?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(Error::new(ErrorCode::ServerRefused, format!("{url} answered {}", resp.status())));
    }
    let mut body = Vec::new();
    loop {
        // A source that stops sending is given up on, not waited for forever.
        let Ok(chunk) = tokio::time::timeout(Duration::from_secs(60), resp.chunk()).await else {
            return Err(Error::new(
                ErrorCode::ServerUnreachable,
                format!("{url}: nothing arrived for a minute after {} bytes; nothing was changed", body.len()),
            ));
        };
        match chunk {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                if body.len() as u64 > max {
                    return Err(Error::new(ErrorCode::UpdateRefused, format!("{url} sent more than the {max} bytes expected; nothing was changed")));
                }
                progress(body.len() as u64, max);
            }
            Ok(None) => return Ok(Some(body)),
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::ServerUnreachable,
                    format!("{url}: the download broke off after {} bytes ({e}); nothing was changed", body.len()),
                ))
            }
        }
    }
}

/// The TLS certificate problem under a request error, if that is what it was.
fn tls_failure(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        // TLS failures arrive wrapped in I/O errors, sometimes twice.
        let mut io = s.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(|i| i.get_ref()) {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                return Some(r.to_string());
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        source = s.source();
    }
    None
}

/// A client for one platform.
#[derive(Clone)]
pub struct Platform {
    http: reqwest::Client,
    base: Url,
}

impl Platform {
    /// A client for the platform at `server_url`, trusting the system's certificates and
    /// `ca_pem` (a pairing's `--ca-file`), as the relay connection does (`crate::tls`).
    pub fn new(server_url: &str, insecure_http: bool, ca_pem: Option<&str>) -> Result<Self> {
        let base = check_url(server_url, insecure_http)?;
        Ok(Self { http: http_client(ca_pem)?, base })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let prefix = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{prefix}{path}"));
        u.set_query(None);
        u
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder, what: &Url) -> Result<T, CallError> {
        Ok(self.send_dated(req, what).await?.0)
    }

    /// Like `send`, also returning the `Date` header.
    async fn send_dated<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder, what: &Url) -> Result<(T, Option<String>), CallError> {
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out".to_string()
            } else if let Some(tls) = tls_failure(&e) {
                format!(
                    "the server's certificate is not trusted ({tls}). If it uses your company's or your own CA, pair with `vpd pair --server {} --ca-file CA.pem`",
                    what.origin().ascii_serialization()
                )
            } else if e.is_connect() {
                "could not connect (is the server running, and is the URL right?)".to_string()
            } else {
                e.to_string()
            };
            CallError::Transient(format!("{what}: {why}"))
        })?;
        let status = resp.status();
        let date = resp.headers().get(reqwest::header::DATE).and_then(|v| v.to_str().ok()).map(String::from);
        let ctype = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body = read_capped(resp).await.map_err(|e| match e {
            ReadErr::TooLarge => CallError::Bad(format!("{what} answered with more than {} KiB; that is not the Viewport API", MAX_BODY / 1024)),
            ReadErr::Io(m) => CallError::Transient(format!("{what}: connection dropped while reading the answer ({m})")),
        })?;
        if status.is_server_error() {
            return Err(CallError::Transient(format!("{what}: server error {status}")));
        }
        let looks_html = ctype.starts_with("text/html") || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
        if looks_html {
            return Err(CallError::Bad(format!(
                "{what} answered with an HTML page, not the Viewport API (status {status}). Is {} the API server and not the web app? Pass the API address with --server.",
                self.base
            )));
        }
        if status.is_redirection() {
            return Err(CallError::Bad(format!("{what} redirected (status {status}); pass the final API address with --server")));
        }
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ApiError>(&body) {
                Ok(e) => CallError::Refused {
                    status: status.as_u16(),
                    message: format!("{what}: {} ({})", e.message.clone().unwrap_or_else(|| e.error.clone()), status.as_u16()),
                    error: e.error,
                },
                Err(_) => CallError::Bad(format!("{what} answered {status} without an API error body")),
            });
        }
        let value = serde_json::from_slice(&body).map_err(|e| {
            let kind = if e.is_eof() { "truncated" } else { "malformed" };
            CallError::Bad(format!("{what} answered with {kind} JSON ({e}); is this a Viewport server of a compatible version?"))
        })?;
        Ok((value, date))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B, timeout: Duration) -> Result<T, CallError> {
        let url = self.url(path);
        self.send(self.http.post(url.clone()).json(body).timeout(timeout), &url).await
    }

    /// `POST /api/pairing-codes`.
    pub async fn create_code(&self, body: &CreatePairingCode) -> Result<PairingCodeCreated, CallError> {
        self.post(paths::PAIRING_CODES, body, Duration::from_secs(20)).await
    }

    /// `GET /api/pairing-codes/{code}/status?wait=N` (long poll).
    pub async fn status(&self, code: &str, status_token: &vpd_proto::Secret, wait_secs: u64) -> Result<PairingStatus, CallError> {
        let mut url = self.url(&paths::pairing_status(code));
        url.set_query(Some(&format!("wait={wait_secs}")));
        let req = self.http.get(url.clone()).header(paths::PAIRING_TOKEN_HEADER, status_token.expose()).timeout(Duration::from_secs(wait_secs + 15));
        self.send(req, &url).await
    }

    /// `POST /api/pairing-codes/{code}/cancel`: stop a code from being approved (Ctrl-C).
    pub async fn cancel(&self, code: &str, status_token: &vpd_proto::Secret) -> Result<(), CallError> {
        let url = self.url(&paths::pairing_cancel(code));
        let req = self.http.post(url.clone()).header(paths::PAIRING_TOKEN_HEADER, status_token.expose()).timeout(Duration::from_secs(5));
        let _: serde_json::Value = self.send(req, &url).await?;
        Ok(())
    }

    /// `POST /api/pairing-codes/{code}/claim`, for a code minted by "Add machine".
    pub async fn claim(&self, code: &str, body: &CreatePairingCode) -> Result<PairingStatus, CallError> {
        self.post(&paths::pairing_claim(code), body, Duration::from_secs(20)).await
    }

    /// `POST /api/runtime/relay-token`.
    pub async fn relay_token(&self, cred: &RuntimeCredential) -> Result<vpd_proto::runtime::RelayToken, CallError> {
        self.post(paths::RELAY_TOKEN, cred, Duration::from_secs(15)).await
    }

    /// `POST /api/runtime/unpair`.
    pub async fn unpair(&self, cred: &RuntimeCredential, timeout: Duration) -> Result<(), CallError> {
        let _: serde_json::Value = self.post(paths::UNPAIR, cred, timeout).await?;
        Ok(())
    }

    /// `POST /api/runtime/rename`.
    pub async fn rename(&self, body: &vpd_proto::runtime::RenameMachine) -> Result<(), CallError> {
        let _: serde_json::Value = self.post(paths::RENAME, body, Duration::from_secs(15)).await?;
        Ok(())
    }

    /// `GET /api/health`, with the server's `Date` header (for the clock-skew check).
    pub async fn health(&self) -> Result<(Health, Option<String>), CallError> {
        let url = self.url(paths::HEALTH);
        self.send_dated(self.http.get(url.clone()).timeout(Duration::from_secs(10)), &url).await
    }
}

enum ReadErr {
    TooLarge,
    Io(String),
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, ReadErr> {
    if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(ReadErr::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ReadErr::Io(e.to_string()))? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(ReadErr::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_rules() {
        assert!(check_url("https://api.example.com", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080", false).is_ok());
        assert!(check_url("http://localhost:8080", false).is_ok());
        assert!(check_url("http://[::1]:8080", false).is_ok());
        assert!(check_url("ws://127.0.0.5/ws", false).is_ok());
        assert_eq!(check_url("http://relay.example.com", false).unwrap_err().code, ErrorCode::InsecureUrl);
        assert_eq!(check_url("http://127.0.0.1.evil.example", false).unwrap_err().code, ErrorCode::InsecureUrl);
        assert!(check_url("http://relay.example.com", true).is_ok());
        assert_eq!(check_url("ftp://x", false).unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(check_url("not a url", false).unwrap_err().code, ErrorCode::InvalidArgument);
    }
}
