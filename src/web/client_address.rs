//! Who is asking, for rate limits: the TCP peer, or behind a trusted reverse proxy
//! (TRUSTED_PROXIES) the last address in X-Forwarded-For that is not a trusted proxy itself.
//! An IPv6 client counts as its /64, which one host can fill at will.

use std::net::IpAddr;

use poem::Request;

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?),
            None => {
                let address = text.trim().parse::<IpAddr>().ok()?;
                (address, if address.is_ipv4() { 32 } else { 128 })
            }
        };
        let fits = if address.is_ipv4() { prefix <= 32 } else { prefix <= 128 };
        fits.then_some(Self { address, prefix })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), 32, self.prefix) == masked(u32::from(*ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix) == masked(u128::from(*ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn masked(bits: u128, width: u32, prefix: u8) -> u128 {
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 { 0 } else { bits >> (width - prefix) }
}

fn rate_limit_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let net = std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1));
                format!("{net}/64")
            }
        },
    }
}

/// The key rate limits count the caller under.
pub fn client_address(trusted_proxies: &[Network], req: &Request) -> String {
    let Some(peer) = req.remote_addr().as_socket_addr().map(|a| a.ip()) else { return "unknown".into() };
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return rate_limit_key(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    // Proxies append: the nearest untrusted hop is the client; anything left of it is the
    // client's own claim and not to be believed.
    rate_limit_key(forwarded.into_iter().rev().find(|ip| !trusted(ip)).unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_their_addresses() {
        let net = Network::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(&"10.1.200.3".parse().unwrap()));
        assert!(!net.contains(&"10.2.0.1".parse().unwrap()));
        assert!(!net.contains(&"::1".parse().unwrap()));
        assert!(Network::parse("127.0.0.1").unwrap().contains(&"127.0.0.1".parse().unwrap()));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(&"8.8.8.8".parse().unwrap()));
        assert!(Network::parse("fd00::/8").unwrap().contains(&"fd12::1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "x", "::/129", "10.0.0.0/x"] {
            assert_eq!(Network::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ipv6_clients_count_as_their_64() {
        assert_eq!(rate_limit_key("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(rate_limit_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(rate_limit_key("10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
