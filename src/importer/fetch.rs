//! Downloads of import archives with Rocket.Chat's SSRF rules (`serverFetch` with
//! `checkForSsrfWithIp`), docs/compatibility.md section 11.4.
//!
//! Every URL, the first and each redirect's, is checked in Rocket.Chat's order: the scheme,
//! the host's form, the allowlist (`--import-url-allowlist`, Rocket.Chat's `SSRF_Allowlist`),
//! the blocked address ranges, the cloud metadata name, then the DNS answer; the request then
//! goes to the address that was checked (the name is resolved once, and the connection pinned
//! to its answer, so a second answer cannot point elsewhere). Redirects are followed by hand,
//! at most [`MAX_REDIRECTS`]; the whole exchange up to the final answer's headers is bounded
//! by the timeout (20 s in Rocket.Chat), the body then by `max_bytes` and an idle timeout.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::LOCATION;
use tokio::io::AsyncWriteExt;

use super::ImportError;
use super::files::{too_large, write_failed};

/// Rocket.Chat's `MAX_REDIRECTS`: the sixth redirect is refused.
pub const MAX_REDIRECTS: usize = 5;
/// Rocket.Chat's `getTimeout` default: until the final answer's headers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// The redirect statuses followed (`redirectStatus`).
const REDIRECT_STATUS: [u16; 5] = [301, 302, 303, 307, 308];

/// Rocket.Chat's refusal text.
pub const SSRF_REFUSED: &str = "error-ssrf-validation-failed";

fn refused() -> ImportError {
    ImportError::plain(SSRF_REFUSED)
}

/// `SSRF_Allowlist`: entries split on commas and newlines, trimmed, empty ones dropped, then
/// normalised as Rocket.Chat's `normalizeAllowlistEntry` does: a domain or anything else
/// lower-cased, an IPv6 address wrapped in brackets, an entry already in brackets kept as it
/// is. An entry matches when it equals the URL's host (IPv6 in brackets, lower-cased) or
/// `host:port` with the URL's explicit port: exact text, no ranges, no wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<String>,
}

impl Allowlist {
    pub fn parse(setting: &str) -> Self {
        let entries = setting
            .split(['\n', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                if is_valid_domain(e) {
                    e.to_lowercase()
                } else if e.starts_with('[') {
                    e.to_owned()
                } else if e.contains(':') && e.parse::<Ipv6Addr>().is_ok() {
                    format!("[{e}]")
                } else {
                    e.to_lowercase()
                }
            })
            .collect();
        Allowlist { entries }
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// `host` as the URL gives it (IPv6 with brackets), `port` when the URL names one.
    fn contains(&self, host: &str, port: Option<u16>) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let normalized = if host.starts_with('[') {
            host.to_owned()
        } else {
            host.to_lowercase()
        };
        let with_port = port.map(|p| format!("{normalized}:{p}"));
        self.entries
            .iter()
            .any(|e| *e == normalized || with_port.as_deref() == Some(e.as_str()))
    }
}

/// Rocket.Chat's domain pattern,
/// `^(?=.{1,253}$)(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[A-Za-z]{2,63}$`: two
/// labels at least, the last 2 to 63 letters, so `localhost` is not a domain.
pub fn is_valid_domain(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let mut labels: Vec<&str> = host.split('.').collect();
    let Some(tld) = labels.pop() else {
        return false;
    };
    if labels.is_empty()
        || !(2..=63).contains(&tld.len())
        || !tld.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return false;
    }
    labels.iter().all(|label| {
        let bytes = label.as_bytes();
        (1..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    })
}

const IPV4_BLOCKED: [(Ipv4Addr, u8); 17] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
    (Ipv4Addr::new(255, 255, 255, 255), 32),
    (Ipv4Addr::new(100, 100, 100, 200), 32),
];

const IPV6_BLOCKED: [(Ipv6Addr, u8); 15] = [
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16),
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// Whether `ip` is in one of Rocket.Chat's blocked ranges (`isIpInAnyRange`). An IPv4
/// address mapped into IPv6 (`::ffff:a.b.c.d`) is in `::ffff:0:0/96`, whatever it maps.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let ip = u32::from(ip);
            IPV4_BLOCKED.iter().any(|(net, prefix)| {
                let mask = if *prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                ip & mask == u32::from(*net) & mask
            })
        }
        IpAddr::V6(ip) => {
            let ip = u128::from(ip);
            IPV6_BLOCKED.iter().any(|(net, prefix)| {
                let mask = if *prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                ip & mask == u128::from(*net) & mask
            })
        }
    }
}

/// A URL that passed the checks: where the request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: Url,
    /// The URL's host as it is written in the URL (IPv6 in brackets).
    pub host: String,
    /// The address a domain resolved to, which the connection must use; `None` for an IP
    /// address, which is connected to as it is.
    pub pinned: Option<IpAddr>,
}

/// Resolves a domain to one address, as Node's `dns.lookup` does (the first answer).
pub async fn system_lookup(host: String, port: u16) -> io::Result<IpAddr> {
    tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

/// Rocket.Chat's `checkForSsrfWithIp` on `url` with the system's resolver; refusals are
/// `error-ssrf-validation-failed`.
pub async fn check_ssrf(url: &str, allow: &Allowlist) -> Result<Target, ImportError> {
    check_ssrf_with(url, allow, system_lookup).await
}

/// [`check_ssrf`] with the given resolver (tests resolve names without DNS).
pub async fn check_ssrf_with<F, Fut>(
    url: &str,
    allow: &Allowlist,
    lookup: F,
) -> Result<Target, ImportError>
where
    F: Fn(String, u16) -> Fut,
    Fut: Future<Output = io::Result<IpAddr>>,
{
    // 1. A URL whose scheme is http or https (a text that is no URL is refused).
    let parsed = Url::parse(url).map_err(|_| refused())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refused());
    }
    // The host as WHATWG URLs write it (Node's `hostname`): lower-cased, IPv6 in brackets.
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(refused()),
    };
    let port = parsed.port();
    let connect_port = parsed.port_or_known_default().unwrap_or(80);
    // 2. An IP address or a domain of Rocket.Chat's pattern.
    let domain = ip.is_none() && is_valid_domain(&host);
    if ip.is_none() && !domain {
        return Err(refused());
    }
    let target = |pinned| Target {
        url: parsed.clone(),
        host: host.clone(),
        pinned,
    };
    // 3. The allowlist: an allowlisted address is taken as it is, an allowlisted domain
    // once it resolves (to any address).
    if allow.contains(&host, port) {
        if ip.is_some() {
            return Ok(target(None));
        }
        return match lookup(host.clone(), connect_port).await {
            Ok(resolved) => Ok(target(Some(resolved))),
            Err(_) => Err(refused()),
        };
    }
    // 4. A blocked address.
    if let Some(ip) = ip {
        if is_blocked(ip) {
            return Err(refused());
        }
        return Ok(target(None));
    }
    // 5. The cloud metadata name.
    if host
        .to_ascii_lowercase()
        .contains("metadata.google.internal")
    {
        return Err(refused());
    }
    // 6. The domain's address must not be blocked either.
    match lookup(host.clone(), connect_port).await {
        Ok(resolved) if !is_blocked(resolved) => Ok(target(Some(resolved))),
        _ => Err(refused()),
    }
}

/// A download whose final answer's headers arrived with a 2xx status; [`Download::finish`]
/// writes its body.
pub struct Download {
    response: reqwest::Response,
    dest: PathBuf,
    max_bytes: u64,
    idle: Duration,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("status", &self.response.status().as_u16())
            .field("dest", &self.dest)
            .finish()
    }
}

impl Download {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// Streams the body into `dest` (created, or truncated), at most `max_bytes` of it; a
    /// body announced or found larger, a broken body or one that sends nothing for the idle
    /// timeout fails, and the partial file is removed. Returns the bytes written.
    pub async fn finish(self) -> Result<u64, ImportError> {
        let Download {
            mut response,
            dest,
            max_bytes,
            idle,
        } = self;
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(too_large(max_bytes));
        }
        let result = async {
            let mut file = tokio::fs::File::create(&dest).await.map_err(write_failed)?;
            let mut written: u64 = 0;
            loop {
                let chunk = tokio::time::timeout(idle, response.chunk())
                    .await
                    .map_err(|_| {
                        ImportError::plain(format!(
                            "The download sent nothing for {} s",
                            idle.as_secs()
                        ))
                    })?
                    .map_err(|e| ImportError::plain(describe(&e)))?;
                let Some(chunk) = chunk else { break };
                written += chunk.len() as u64;
                if written > max_bytes {
                    return Err(too_large(max_bytes));
                }
                file.write_all(&chunk).await.map_err(write_failed)?;
            }
            file.flush().await.map_err(write_failed)?;
            file.sync_all().await.map_err(write_failed)?;
            Ok(written)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&dest).await;
        }
        result
    }
}

/// A request error in the words of node-fetch's `FetchError`:
/// `request to <url> failed, reason: <cause>`.
fn describe(error: &reqwest::Error) -> String {
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        cause = e.to_string();
        source = e.source();
    }
    if cause.is_empty() {
        cause = error.to_string();
    }
    match error.url() {
        Some(url) => format!("request to {url} failed, reason: {cause}"),
        None => cause,
    }
}

/// Downloads `url` as Rocket.Chat's downloadPublicImportFile fetches it: each URL checked
/// ([`check_ssrf`]), redirects (301, 302, 303, 307, 308) followed by hand up to
/// [`MAX_REDIRECTS`], `timeout` until the final headers (`"The user aborted a request."`,
/// node-fetch's text, past it), a status outside 2xx `Unexpected response status <n>`.
/// Returns once the headers are in; the body is written by [`Download::finish`] into `dest`,
/// bounded by `max_bytes`, with `timeout` as its idle timeout.
pub async fn download(
    url: &str,
    allow: &Allowlist,
    dest: &Path,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Download, ImportError> {
    download_with(url, allow, dest, max_bytes, timeout, system_lookup).await
}

/// [`download`] with the given resolver.
pub async fn download_with<F, Fut>(
    url: &str,
    allow: &Allowlist,
    dest: &Path,
    max_bytes: u64,
    timeout: Duration,
    lookup: F,
) -> Result<Download, ImportError>
where
    F: Fn(String, u16) -> Fut,
    Fut: Future<Output = io::Result<IpAddr>>,
{
    let response = tokio::time::timeout(timeout, fetch(url, allow, &lookup))
        .await
        .map_err(|_| ImportError::plain("The user aborted a request."))??;
    if !response.status().is_success() {
        return Err(ImportError::plain(format!(
            "Unexpected response status {}",
            response.status().as_u16()
        )));
    }
    Ok(Download {
        response,
        dest: dest.to_owned(),
        max_bytes,
        idle: timeout,
    })
}

async fn fetch<F, Fut>(
    url: &str,
    allow: &Allowlist,
    lookup: &F,
) -> Result<reqwest::Response, ImportError>
where
    F: Fn(String, u16) -> Fut,
    Fut: Future<Output = io::Result<IpAddr>>,
{
    let mut current = url.to_owned();
    for redirects in 0..=MAX_REDIRECTS {
        let target = check_ssrf_with(&current, allow, lookup).await?;
        // No proxy (it would resolve the name again), no automatic redirects, and the name
        // pinned to the address that was checked.
        let mut client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ip) = target.pinned {
            client = client.resolve(&target.host, SocketAddr::new(ip, 0));
        }
        let client = client
            .build()
            .map_err(|e| ImportError::plain(describe(&e)))?;
        let response = client
            .get(target.url.clone())
            .send()
            .await
            .map_err(|e| ImportError::plain(describe(&e)))?;
        if !REDIRECT_STATUS.contains(&response.status().as_u16()) {
            return Ok(response);
        }
        let Some(location) = response
            .headers()
            .get(LOCATION)
            .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
        else {
            return Err(ImportError::plain(
                "redirect-response-location-header-missing",
            ));
        };
        if redirects == MAX_REDIRECTS {
            return Err(ImportError::plain("error-too-many-redirects"));
        }
        current = target
            .url
            .join(&location)
            .map_err(|_| ImportError::plain("Invalid URL"))?
            .to_string();
    }
    Err(ImportError::plain("error-processing-request"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn no_dns(_: String, _: u16) -> io::Result<IpAddr> {
        Err(io::Error::other("no DNS in this test"))
    }

    fn check(url: &str, allow: &str) -> Result<Target, ImportError> {
        let allow = Allowlist::parse(allow);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(check_ssrf_with(url, &allow, |host: String, _| async move {
                match host.as_str() {
                    "public.example.com" => Ok("93.184.216.34".parse().unwrap()),
                    "private.example.com" => Ok("10.1.2.3".parse().unwrap()),
                    "v6private.example.com" => Ok("fd00::1".parse().unwrap()),
                    "mock-server.dev" => Ok("127.0.0.1".parse().unwrap()),
                    "metadata.google.internal.example.com" => Ok("93.184.216.34".parse().unwrap()),
                    _ => no_dns(host, 0).await,
                }
            }))
    }

    fn refused(url: &str, allow: &str) -> bool {
        match check(url, allow) {
            Err(e) => {
                assert_eq!(e.to_string(), SSRF_REFUSED, "{url}");
                true
            }
            Ok(_) => false,
        }
    }

    #[test]
    fn every_blocked_ipv4_range() {
        for ip in [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "100.100.100.200",
        ] {
            assert!(is_blocked(ip.parse().unwrap()), "{ip}");
            assert!(refused(&format!("http://{ip}/a.zip"), ""), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.88.98.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "8.8.8.8",
        ] {
            assert!(!is_blocked(ip.parse().unwrap()), "{ip}");
            let target = check(&format!("http://{ip}/a.zip"), "").unwrap();
            assert_eq!(target.pinned, None);
        }
    }

    #[test]
    fn every_blocked_ipv6_range_and_its_forms() {
        for ip in [
            "::",
            "::1",
            "0:0:0:0:0:0:0:1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::ffff:7f00:1",
            "3fff::1",
            "3fff:0fff::1",
            "5f00::1",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:0:ffff::1",
            "2001:20::1",
            "2001:2f::1",
            "2001:db8::1",
            "2002::1",
            "fc00::1",
            "fdff::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
        ] {
            assert!(is_blocked(ip.parse().unwrap()), "{ip}");
            assert!(refused(&format!("http://[{ip}]/a.zip"), ""), "{ip}");
        }
        for ip in [
            "2606:4700:4700::1111",
            "3ffe::1",
            "3fff:1000::1",
            "2001:1::1",
            "2001:30::1",
            "fec0::1",
            "::2",
        ] {
            assert!(!is_blocked(ip.parse().unwrap()), "{ip}");
            assert!(!refused(&format!("http://[{ip}]:8080/a.zip"), ""), "{ip}");
        }
        // An IPv4 address written as one number or in hex is still that address.
        assert!(refused("http://2130706433/", ""));
        assert!(refused("http://0x7f.1/", ""));
    }

    #[test]
    fn hostnames_follow_rocket_chats_pattern() {
        for bad in [
            "localhost",
            "intranet",
            "a.b1",
            "-a.com",
            "a-.com",
            "a..com",
            "a.c",
        ] {
            assert!(!is_valid_domain(bad), "{bad}");
        }
        for good in [
            "example.com",
            "a.b.example.org",
            "x-y.io",
            "1.2.3.example.com",
        ] {
            assert!(is_valid_domain(good), "{good}");
        }
        assert!(!is_valid_domain(&format!("{}.com", "a".repeat(64))));
        assert!(!is_valid_domain(&format!(
            "{}.com",
            vec!["a".repeat(60); 5].join(".")
        )));
        assert!(refused("http://localhost:3000/api/v1/info", ""));
        assert!(refused("http://intranet/", ""));
        // Even allowlisted, `localhost` is no domain (Rocket.Chat checks the form first).
        assert!(refused("http://localhost:3000/", "localhost:3000"));
    }

    #[test]
    fn schemes_and_unparsable_urls() {
        for bad in [
            "ftp://example.com/a.zip",
            "file:///etc/passwd",
            "gopher://public.example.com/",
            "http//public.example.com",
            "http://",
            "httpx",
        ] {
            assert!(refused(bad, ""), "{bad}");
        }
        let ok = check("https://public.example.com/a.zip", "").unwrap();
        assert_eq!(ok.pinned, Some("93.184.216.34".parse().unwrap()));
        assert_eq!(ok.host, "public.example.com");
    }

    #[test]
    fn domains_resolving_to_blocked_addresses_and_metadata() {
        assert!(refused("http://private.example.com/", ""));
        assert!(refused("http://v6private.example.com/", ""));
        assert!(
            refused("http://unknown.example.com/", ""),
            "a failed lookup"
        );
        assert!(refused("http://metadata.google.internal.example.com/", ""));
        assert!(refused("http://METADATA.GOOGLE.INTERNAL.example.com/", ""));
        // metadata.google.internal itself: `internal` is a valid last label.
        assert!(refused(
            "http://metadata.google.internal/computeMetadata/v1/",
            ""
        ));
    }

    #[test]
    fn the_allowlist_matches_host_or_host_and_port_exactly() {
        // Rocket.Chat's e2e: the mock server's `host:port`.
        let t = check(
            "http://mock-server.dev:8080/import-test.zip",
            "mock-server.dev:8080",
        )
        .unwrap();
        assert_eq!(t.pinned, Some("127.0.0.1".parse().unwrap()));
        assert!(check("http://mock-server.dev:8080/x", "mock-server.dev").is_ok());
        assert!(check("http://MOCK-SERVER.dev:8080/x", " Mock-Server.DEV ").is_ok());
        assert!(refused(
            "http://mock-server.dev:8081/x",
            "mock-server.dev:8080"
        ));
        assert!(
            refused("http://mock-server.dev/x", "mock-server.dev:80"),
            "no explicit port"
        );
        assert!(refused("http://mock-server.dev:8080/x", ""));
        // An allowlisted domain still has to resolve.
        assert!(refused(
            "http://unknown.example.com/",
            "unknown.example.com"
        ));
        // Addresses: exact text, with or without the port, both separators.
        assert!(check("http://127.0.0.1:3000/", "127.0.0.1:3000").is_ok());
        assert!(check("http://127.0.0.1:3000/", "a.com,\n127.0.0.1").is_ok());
        assert!(check("http://10.0.0.5/", "x.com\n10.0.0.5,").is_ok());
        assert!(refused("http://127.0.0.1:3001/", "127.0.0.1:3000"));
        assert!(refused("http://127.0.0.2/", "127.0.0.0/8"), "no ranges");
        assert!(refused("http://10.0.0.5/", "*.0.0.5"), "no wildcards");
        // IPv6: with or without brackets in the setting, compared in the URL's form.
        assert!(check("http://[::1]:8080/", "::1").is_ok());
        assert!(check("http://[::1]:8080/", "[::1]:8080").is_ok());
        assert!(check("http://[fe80::1]/", "fe80::1").is_ok());
        assert!(refused("http://[::1]:8080/", "[::1]:9090"));
        assert!(refused("http://[::1]/", "[0:0:0:0:0:0:0:1]"), "exact text");
        assert_eq!(
            Allowlist::parse(" A.com ,\n\n[::1]:80, ::1 ,10.0.0.1:8080,FE80::1").entries(),
            ["a.com", "[::1]:80", "[::1]", "10.0.0.1:8080", "[FE80::1]"]
        );
    }
}
