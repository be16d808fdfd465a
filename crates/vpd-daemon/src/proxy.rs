//! One proxy rule set for everything the daemon sends (issue 10 item 6): `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case), applied the same way to the
//! platform's HTTP client and to the relay's WebSocket, with `http`, `https`, `socks5` and
//! `socks5h` proxies for both. `NO_PROXY` takes host names (`example.com` also covers its
//! subdomains, as does `.example.com`), addresses, CIDR ranges, any of these with `:port`,
//! and `*`.
//!
//! A daemon started at login does not see a shell's variables, so `vpd pair` and `vpd
//! install` record the ones in effect in `config.json`; the daemon uses its own environment
//! when it has any proxy variable, else what was recorded.

use crate::error::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use url::Url;

/// The four variables, as set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyEnv {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// This process's variables (upper case first, then lower case).
    pub fn from_env() -> ProxyEnv {
        let var = |k: &str| std::env::var(k).ok().or_else(|| std::env::var(k.to_ascii_lowercase()).ok()).filter(|v| !v.trim().is_empty());
        ProxyEnv { https_proxy: var("HTTPS_PROXY"), http_proxy: var("HTTP_PROXY"), all_proxy: var("ALL_PROXY"), no_proxy: var("NO_PROXY") }
    }

    pub fn is_empty(&self) -> bool {
        self.https_proxy.is_none() && self.http_proxy.is_none() && self.all_proxy.is_none() && self.no_proxy.is_none()
    }
}

/// What `vpd pair`/`vpd install` recorded (`config.json` `daemon.proxy`), as this daemon
/// last read it.
static RECORDED: std::sync::RwLock<Option<ProxyEnv>> = std::sync::RwLock::new(None);

/// Sets what was recorded (at daemon start, and when a pairing records new settings).
pub fn set_recorded(p: Option<ProxyEnv>) {
    *RECORDED.write().unwrap() = p;
}

/// Where the rules in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    Recorded,
    None,
}

/// The rules in effect.
#[derive(Debug, Clone)]
pub struct Proxies {
    env: ProxyEnv,
    https: Option<Url>,
    http: Option<Url>,
    all: Option<Url>,
    no: Vec<NoProxyRule>,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyRule {
    Any,
    Host { name: String, port: Option<u16> },
    Net { net: ipnet::IpNet, port: Option<u16> },
}

fn parse_proxy(raw: &str, var: &str) -> Result<Url> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") { raw.to_string() } else { format!("http://{raw}") };
    // Errors never repeat the value: it may hold a password.
    let u = Url::parse(&with_scheme).map_err(|e| Error::new(ErrorCode::InvalidArgument, format!("{var} is not a proxy URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") || u.host_str().is_none() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("{var} is a {} URL: only http, https, socks5 and socks5h proxies are supported", u.scheme()),
        ));
    }
    Ok(u)
}

fn parse_no_proxy(list: &str) -> Vec<NoProxyRule> {
    list.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            if r == "*" {
                return NoProxyRule::Any;
            }
            // `[v6]:port`, `host:port`, `v4:port`, a bare v6 address, or a CIDR.
            let (addr, port) = if let Some(rest) = r.strip_prefix('[') {
                match rest.split_once(']') {
                    Some((a, p)) => (a.to_string(), p.strip_prefix(':').and_then(|p| p.parse().ok())),
                    None => (rest.to_string(), None),
                }
            } else if r.matches(':').count() == 1 {
                let (a, p) = r.split_once(':').expect("one colon");
                (a.to_string(), p.parse().ok())
            } else {
                (r.to_string(), None)
            };
            if let Ok(net) = addr.parse::<ipnet::IpNet>() {
                return NoProxyRule::Net { net, port };
            }
            if let Ok(ip) = addr.parse::<IpAddr>() {
                return NoProxyRule::Net { net: ip.into(), port };
            }
            NoProxyRule::Host { name: addr.trim_start_matches("*.").trim_start_matches('.').to_ascii_lowercase(), port }
        })
        .collect()
}

impl Proxies {
    /// From these variables.
    pub fn new(env: ProxyEnv, source: Source) -> Result<Proxies> {
        let p = |v: &Option<String>, name| v.as_deref().map(|raw| parse_proxy(raw, name)).transpose();
        Ok(Proxies {
            https: p(&env.https_proxy, "HTTPS_PROXY")?,
            http: p(&env.http_proxy, "HTTP_PROXY")?,
            all: p(&env.all_proxy, "ALL_PROXY")?,
            no: env.no_proxy.as_deref().map(parse_no_proxy).unwrap_or_default(),
            env,
            source,
        })
    }

    /// The daemon's: its own environment when it has a proxy variable, else what was
    /// recorded ([`set_recorded`]).
    pub fn current() -> Proxies {
        let recorded = RECORDED.read().unwrap().clone();
        let recorded = recorded.as_ref();
        let env = ProxyEnv::from_env();
        // The environment decides when it names a proxy; a lone NO_PROXY does not erase the
        // recorded proxies (it narrows them).
        let names_proxy = env.https_proxy.is_some() || env.http_proxy.is_some() || env.all_proxy.is_some();
        let (env, source) = if names_proxy {
            (env, Source::Environment)
        } else if let (Some(r), Some(no)) = (recorded.filter(|r| !r.is_empty()), env.no_proxy.clone()) {
            (ProxyEnv { no_proxy: Some(no), ..r.clone() }, Source::Recorded)
        } else if let Some(r) = recorded.filter(|r| !r.is_empty()) {
            (r.clone(), Source::Recorded)
        } else {
            (ProxyEnv::default(), Source::None)
        };
        Proxies::new(env, source).unwrap_or_else(|e| {
            tracing::warn!("proxy settings ignored: {}", e.message);
            Proxies { env: ProxyEnv::default(), https: None, http: None, all: None, no: Vec::new(), source: Source::None }
        })
    }

    /// The proxy for a connection to `target` (`https`/`wss` use `HTTPS_PROXY`, `http`/`ws`
    /// `HTTP_PROXY`, each falling back to `ALL_PROXY`), or `None` for a direct connection.
    pub fn for_url(&self, target: &Url) -> Option<Url> {
        let host = target.host_str()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = target.port_or_known_default();
        let ip = host.parse::<IpAddr>().ok();
        for rule in &self.no {
            let port_ok = |p: &Option<u16>| p.is_none() || *p == port;
            let hit = match rule {
                NoProxyRule::Any => true,
                NoProxyRule::Net { net, port: p } => ip.is_some_and(|ip| net.contains(&ip)) && port_ok(p),
                NoProxyRule::Host { name, port: p } => (host == *name || host.ends_with(&format!(".{name}"))) && port_ok(p),
            };
            if hit {
                return None;
            }
        }
        let specific = if matches!(target.scheme(), "https" | "wss") { &self.https } else { &self.http };
        specific.clone().or_else(|| self.all.clone())
    }

    /// What `vpd doctor` and the logs say.
    pub fn describe(&self) -> String {
        if self.https.is_none() && self.http.is_none() && self.all.is_none() {
            return "none: connections are direct".into();
        }
        let mut parts = Vec::new();
        for (name, u) in [("https", &self.https), ("http", &self.http), ("all", &self.all)] {
            if let Some(u) = u {
                parts.push(format!("{name} via {}", redacted(u)));
            }
        }
        if let Some(n) = &self.env.no_proxy {
            parts.push(format!("not for {n}"));
        }
        let from = match self.source {
            Source::Environment => "from the daemon's environment",
            Source::Recorded => "recorded by `vpd pair`/`vpd install`",
            Source::None => "",
        };
        format!("{} ({from})", parts.join("; "))
    }
}

/// A proxy URL without its password.
pub fn redacted(u: &Url) -> String {
    let mut u = u.clone();
    let _ = u.set_password(None);
    u.to_string()
}

/// Something a WebSocket can run over: a TCP stream, or a tunnel through a proxy.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to `host:port` through `proxy` (http or https CONNECT, socks5 resolving here,
/// socks5h resolving at the proxy).
pub async fn connect(proxy: &Url, host: &str, port: u16, tls: std::sync::Arc<rustls::ClientConfig>) -> std::io::Result<Box<dyn Io>> {
    let phost = proxy.host_str().unwrap_or("127.0.0.1").trim_start_matches('[').trim_end_matches(']').to_string();
    let pport = proxy.port_or_known_default().unwrap_or(1080);
    let tcp = tokio::net::TcpStream::connect((phost.as_str(), pport)).await?;
    let _ = tcp.set_nodelay(true);
    match proxy.scheme() {
        "http" => Ok(Box::new(tunnel(tcp, proxy, host, port).await?)),
        "https" => {
            let name = rustls::pki_types::ServerName::try_from(phost.clone()).map_err(std::io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
            Ok(Box::new(tunnel(tls, proxy, host, port).await?))
        }
        scheme @ ("socks5" | "socks5h") => {
            let target: (String, u16) = if scheme == "socks5" {
                // socks5: the name is resolved here, the proxy gets an address.
                let addr =
                    tokio::net::lookup_host((host, port)).await?.next().ok_or_else(|| std::io::Error::other(format!("{host} has no address")))?;
                (addr.ip().to_string(), port)
            } else {
                (host.to_string(), port)
            };
            let target = (target.0.as_str(), target.1);
            let s = if proxy.username().is_empty() {
                tokio_socks::tcp::Socks5Stream::connect_with_socket(tcp, target).await
            } else {
                tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(tcp, target, proxy.username(), proxy.password().unwrap_or("")).await
            }
            .map_err(|e| std::io::Error::other(format!("the proxy {} refused {host}:{port}: {e}", redacted(proxy))))?;
            Ok(Box::new(s))
        }
        other => Err(std::io::Error::other(format!("{other} proxies are not supported"))),
    }
}

/// HTTP `CONNECT` over `s`.
async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, proxy: &Url, host: &str, port: u16) -> std::io::Result<S> {
    use base64::Engine;
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if !proxy.username().is_empty() {
        let cred = format!("{}:{}", proxy.username(), proxy.password().unwrap_or(""));
        req.push_str(&format!("Proxy-Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(cred)));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || s.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other(format!("the proxy {} did not answer CONNECT", redacted(proxy))));
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head);
    let line = status.lines().next().unwrap_or("");
    if line.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!("the proxy {} refused CONNECT {target}: {line}", redacted(proxy))));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(all: &str, no: &str) -> Proxies {
        Proxies::new(ProxyEnv { all_proxy: Some(all.into()), no_proxy: Some(no.into()), ..Default::default() }, Source::Environment).unwrap()
    }

    #[test]
    fn no_proxy_knows_names_suffixes_addresses_ranges_ports_and_star() {
        let p = rules("socks5h://proxy:1080", "example.com, .corp.local, 10.0.0.0/8, 192.0.2.7, [::1], internal:8443, 127.0.0.1:9000");
        let via = |u: &str| p.for_url(&Url::parse(u).unwrap()).map(|u| u.to_string());
        assert_eq!(via("https://example.com/x"), None);
        assert_eq!(via("wss://api.example.com/ws"), None, "a name covers its subdomains");
        assert!(via("https://notexample.com").is_some(), "but not a longer name");
        assert_eq!(via("https://a.corp.local"), None);
        assert_eq!(via("http://10.1.2.3:8080"), None, "a CIDR");
        assert_eq!(via("http://192.0.2.7"), None);
        assert!(via("http://192.0.2.8").is_some());
        assert_eq!(via("http://[::1]:7070"), None);
        assert_eq!(via("https://internal:8443"), None, "a port rule");
        assert!(via("https://internal").is_some(), "only for that port");
        assert_eq!(via("ws://127.0.0.1:9000/ws"), None);
        assert_eq!(via("ws://127.0.0.1:9001/ws").as_deref(), Some("socks5h://proxy:1080"));
        assert_eq!(rules("http://p:3128", "*").for_url(&Url::parse("https://x").unwrap()), None);
    }

    #[test]
    fn the_scheme_picks_the_variable_and_bad_proxies_are_refused() {
        let p = Proxies::new(
            ProxyEnv { https_proxy: Some("https://secure:8443".into()), http_proxy: Some("plain:3128".into()), ..Default::default() },
            Source::Recorded,
        )
        .unwrap();
        assert_eq!(p.for_url(&Url::parse("wss://r/ws").unwrap()).unwrap().as_str(), "https://secure:8443/");
        assert_eq!(p.for_url(&Url::parse("http://r/").unwrap()).unwrap().as_str(), "http://plain:3128/");
        assert!(p.describe().contains("recorded"));
        let bad = Proxies::new(ProxyEnv { all_proxy: Some("ftp://me:hunter2@x".into()), ..Default::default() }, Source::Environment);
        let msg = bad.unwrap_err().message;
        assert!(msg.contains("only http, https, socks5 and socks5h") && !msg.contains("hunter2"), "{msg}");
        let secret = rules("socks5://user:hunter2@proxy:1080", "");
        assert!(!secret.describe().contains("hunter2"), "{}", secret.describe());
    }
}
