//! The SSRF guard for fetching client metadata documents: a client id is a URL the client
//! chooses, so the fetch may only reach addresses on the public internet, never this host,
//! its network, cloud metadata (169.254.169.254) or an address that tunnels to one of those.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a metadata fetch may connect to `ip`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

fn v4_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network", incl. unspecified
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64/10
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (b & 0xf0) == 16) // private 172.16/12
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !special
}

fn v6_public(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) reach the embedded IPv4.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_public(v4);
    }
    if s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return v4_public(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
    }
    // Only global unicast (2000::/3) is routable on the internet; everything else (::, ::1,
    // fc00::/7, fe80::/10, ff00::/8, 64:ff9b::/96, 64:ff9b:1::/48, 100::/64, ...) is refused.
    if (s[0] & 0xe000) != 0x2000 {
        return false;
    }
    match s[0] {
        // IETF protocol assignments 2001::/23 (incl. Teredo 2001::/32), documentation.
        0x2001 => s[1] >= 0x0200 && s[1] != 0x0db8,
        // 6to4: tunnels to an embedded IPv4.
        0x2002 => false,
        // Documentation 3fff::/20.
        0x3fff => s[1] >= 0x1000,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn internal_and_special_addresses_are_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "2002:c0a8:101::1",
            "2002:808:808::1",
            "2001::1",
            "2001:0:4136:e378::1",
            "100::1",
            "3fff::1",
            "3fff:fff::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:0.0.0.0",
        ] {
            assert!(!public(ip), "{ip} judged public");
        }
    }

    #[test]
    fn internet_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "2001:200::1",
            "3fff:1000::1",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
        ] {
            assert!(public(ip), "{ip} judged internal");
        }
    }
}
