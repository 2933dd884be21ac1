//! The gateway's own name resolution (injectable: tests point names at their test hosts).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;

/// A boxed future returned by [`Resolve::lookup`].
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Resolves a name to its IPv4 addresses, from the gateway's side (the host's namespace).
/// `Ok(vec![])` and `Err` both mean "no address": the caller denies or answers NXDOMAIN.
pub trait Resolve: Send + Sync + 'static {
    fn lookup<'a>(&'a self, name: &'a str) -> LookupFuture<'a>;
}

/// The host's resolver (getaddrinfo on tokio's blocking pool), IPv4 only: sandboxes have no
/// IPv6 route.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, name: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name, 0)).await?;
            let mut out: Vec<IpAddr> = addrs.map(|a| a.ip()).filter(IpAddr::is_ipv4).collect();
            out.dedup();
            Ok(out)
        })
    }
}

/// A fixed table of names (lower case) to addresses; anything else does not exist.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl StaticResolver {
    pub fn new<I, S>(entries: I) -> StaticResolver
    where
        I: IntoIterator<Item = (S, IpAddr)>,
        S: Into<String>,
    {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (name, ip) in entries {
            map.entry(name.into().to_ascii_lowercase())
                .or_default()
                .push(ip);
        }
        StaticResolver(map)
    }
}

impl Resolve for StaticResolver {
    fn lookup<'a>(&'a self, name: &'a str) -> LookupFuture<'a> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let found = self.0.get(&key).cloned();
        Box::pin(async move {
            found.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{key}: no such name"))
            })
        })
    }
}
