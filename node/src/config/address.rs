//! The names a node is reached by: its client and internal host names with
//! their domains, and whether an address written elsewhere in the
//! configuration (`autocluster.first`) names this node.
//!
//! A host name that already ends with its domain keeps it once (Kubernetes
//! gives pods fully qualified names such as
//! `ranvier-0.ranvier-internal.ns.svc.cluster.local`, and the domain derived
//! from the client host name is the same suffix); an IP address never gets
//! a domain.

use std::net::IpAddr;

use super::NodeConfig;

/// Default port of an internal address without one (Axon Server's).
pub const INTERNAL_PORT_DEFAULT: u16 = 8224;

/// `host` with `domain` appended, unless there is no domain, the host
/// already ends with it, or the host is an IP address.
pub fn qualified(host: &str, domain: Option<&str>) -> String {
    let host = host.trim_end_matches('.');
    let Some(domain) = domain.map(|d| d.trim_matches('.')).filter(|d| !d.is_empty()) else {
        return host.to_owned();
    };
    let lower = host.to_ascii_lowercase();
    let suffix = format!(".{}", domain.to_ascii_lowercase());
    if host.parse::<IpAddr>().is_ok() || lower == domain.to_ascii_lowercase() || lower.ends_with(&suffix) {
        return host.to_owned();
    }
    format!("{host}.{domain}")
}

impl NodeConfig {
    /// The host name clients are given: `hostname` with `domain`.
    pub fn client_host(&self) -> String {
        qualified(&self.hostname, self.domain.as_deref())
    }

    /// The host name other nodes use: `internal-hostname` with
    /// `internal-domain`.
    pub fn internal_host(&self) -> String {
        qualified(&self.internal_hostname, self.internal_domain.as_deref())
    }

    /// Whether `address` (`host[:port]`, the port defaulting to 8224) names
    /// this node's internal port `port`, in any spelling of its names: the
    /// internal or client host name, short or with its domain, any case,
    /// with or without a trailing dot.
    pub fn is_named_by(&self, address: &str, port: u16) -> bool {
        let address = address.trim();
        let (host, named_port) = match address.rsplit_once(':') {
            Some((host, text)) => match text.parse::<u16>() {
                Ok(named) => (host, named),
                Err(_) => return false,
            },
            None => (address, INTERNAL_PORT_DEFAULT),
        };
        if named_port != port {
            return false;
        }
        let host = host.trim_end_matches('.');
        let names = [self.internal_hostname.clone(), self.internal_host(), self.hostname.clone(), self.client_host()];
        names.iter().any(|name| name.trim_end_matches('.').eq_ignore_ascii_case(host))
    }
}
