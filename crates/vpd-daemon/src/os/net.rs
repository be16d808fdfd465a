//! The addresses of the network interfaces that are up (not loopback), sorted: when they
//! change, a network came or went and every relay connection is retried at once.

/// `(interface, address bytes)`, sorted.
pub fn addresses() -> Vec<(String, Vec<u8>)> {
    let mut out = imp::addresses();
    out.sort();
    out
}

#[cfg(unix)]
mod imp {
    pub fn addresses() -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills a list we only read and then free.
        unsafe {
            if libc::getifaddrs(&mut ifap) != 0 {
                return out;
            }
            let mut p = ifap;
            while !p.is_null() {
                let ifa = &*p;
                let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0 && ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) == 0;
                if up && !ifa.ifa_addr.is_null() {
                    let family = (*ifa.ifa_addr).sa_family as i32;
                    let bytes = match family {
                        libc::AF_INET => (*(ifa.ifa_addr as *const libc::sockaddr_in)).sin_addr.s_addr.to_ne_bytes().to_vec(),
                        libc::AF_INET6 => (*(ifa.ifa_addr as *const libc::sockaddr_in6)).sin6_addr.s6_addr.to_vec(),
                        _ => Vec::new(),
                    };
                    if !bytes.is_empty() {
                        out.push((std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned(), bytes));
                    }
                }
                p = ifa.ifa_next;
            }
            libc::freeifaddrs(ifap);
        }
        out
    }
}

#[cfg(windows)]
mod imp {
    pub fn addresses() -> Vec<(String, Vec<u8>)> {
        let Ok(list) = if_addrs::get_if_addrs() else { return Vec::new() };
        list.into_iter()
            .filter(|i| !i.is_loopback())
            .map(|i| {
                let bytes = match i.ip() {
                    std::net::IpAddr::V4(a) => a.octets().to_vec(),
                    std::net::IpAddr::V6(a) => a.octets().to_vec(),
                };
                (i.name, bytes)
            })
            .collect()
    }
}
