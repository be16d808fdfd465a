//! Who a request comes from, for every per-client limit: the socket's address, or — only when
//! the socket is a proxy named by `serve --trusted-proxy CIDR` — the address that proxy says
//! it forwarded for (`X-Forwarded-For`, else `Forwarded: for=`), read from the right and
//! skipping further trusted proxies. An IPv6 client is keyed by its /64 (one host has
//! billions of addresses), an IPv4-mapped one as IPv4.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};

/// The client's address (see the module docs).
pub fn address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = match headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>() {
        xff if !xff.is_empty() => xff.iter().flat_map(|v| v.split(',')).filter_map(|s| parse_ip(s.trim())).collect(),
        _ => headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
            .filter_map(|(_, v)| parse_ip(v.trim().trim_matches('"')))
            .collect(),
    };
    forwarded.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer)
}

/// `203.0.113.5`, `203.0.113.5:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}

/// The key a limit counts by: IPv4 as is, IPv6 by its /64.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let xff = h(&[("x-forwarded-for", "198.51.100.1, 203.0.113.5")]);
        // Not a trusted proxy: the header is anyone's to write.
        assert_eq!(address(proxy, &xff, &[]), proxy);
        // The rightmost address the trusted proxy added is the client.
        assert_eq!(address(proxy, &xff, &trusted), "203.0.113.5".parse::<IpAddr>().unwrap());
        // A chain of trusted proxies is skipped.
        let chain = h(&[("x-forwarded-for", "203.0.113.5, 10.0.0.7")]);
        assert_eq!(address(proxy, &chain, &trusted), "203.0.113.5".parse::<IpAddr>().unwrap());
        let fwd = h(&[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")]);
        assert_eq!(address(proxy, &fwd, &trusted), "2001:db8::7".parse::<IpAddr>().unwrap());
        // Nothing usable: the proxy itself.
        assert_eq!(address(proxy, &h(&[("x-forwarded-for", "garbage")]), &trusted), proxy);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(key("2001:db8:1:2:aaaa::1".parse().unwrap()), key("2001:db8:1:2:bbbb::9".parse().unwrap()));
        assert_ne!(key("2001:db8:1:2::1".parse().unwrap()), key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(key("::ffff:203.0.113.5".parse().unwrap()), "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(key("203.0.113.5".parse().unwrap()), "203.0.113.5".parse::<IpAddr>().unwrap());
    }
}
