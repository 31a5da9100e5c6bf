//! Which view a source address belongs to: `[views.*] sources`, matched per query.

use std::net::IpAddr;

use crate::config::View;

/// The views' prefixes, in a form cheap to match on the query path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Views {
    /// (prefix, view index) for IPv4, as (network, mask).
    v4: Vec<(u32, u32, usize)>,
    /// The same for IPv6.
    v6: Vec<(u128, u128, usize)>,
}

impl Views {
    /// The prefixes of `views`, each tagged with its view's index in that list.
    pub fn new(views: &[View]) -> Self {
        let mut out = Views::default();
        for (i, v) in views.iter().enumerate() {
            for n in &v.sources {
                match n {
                    ipnet::IpNet::V4(n) => {
                        out.v4
                            .push((u32::from(n.network()), u32::from(n.netmask()), i));
                    }
                    ipnet::IpNet::V6(n) => {
                        out.v6
                            .push((u128::from(n.network()), u128::from(n.netmask()), i));
                    }
                }
            }
        }
        out
    }

    /// True when no view is configured.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The index of the view `ip` belongs to, if any. An IPv4-mapped IPv6 address is
    /// matched as the IPv4 address it carries (a dual-stack socket reports IPv4 clients so).
    pub fn of(&self, ip: IpAddr) -> Option<usize> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find(|(net, mask, _)| a & mask == *net)
                    .map(|t| t.2)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find(|(net, mask, _)| a & mask == *net)
                    .map(|t| t.2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, nets: &[&str]) -> View {
        View {
            name: name.into(),
            sources: nets.iter().map(|n| n.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn addresses_find_their_view() {
        let v = Views::new(&[
            view("staff", &["10.0.0.0/8", "2001:db8::/32"]),
            view("lab", &["127.0.0.2/32"]),
        ]);
        assert_eq!(v.of("10.1.2.3".parse().unwrap()), Some(0));
        assert_eq!(v.of("11.1.2.3".parse().unwrap()), None);
        assert_eq!(v.of("2001:db8::5".parse().unwrap()), Some(0));
        assert_eq!(v.of("2001:db9::5".parse().unwrap()), None);
        assert_eq!(v.of("127.0.0.2".parse().unwrap()), Some(1));
        assert_eq!(v.of("127.0.0.1".parse().unwrap()), None);
        assert_eq!(v.of("::ffff:127.0.0.2".parse().unwrap()), Some(1));
        assert!(Views::new(&[]).is_empty());
    }
}
