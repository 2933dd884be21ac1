//! What name a transparently redirected connection asks for: the TLS ClientHello's SNI or the
//! HTTP Host header, read from the first bytes the client sends (pure).

/// Most bytes read before deciding that a connection carries no name.
pub const MAX_SNIFF: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// A TLS ClientHello, with its server name if it has one.
    Tls(Option<String>),
    /// An HTTP/1 request, with its Host (port removed) if it has one.
    Http(Option<String>),
    /// Something else (or a name that is not a valid host name).
    Other,
}

/// Looks at the bytes a client sent so far.
pub fn sniff(buf: &[u8]) -> Sniff {
    if buf.is_empty() {
        return Sniff::NeedMore;
    }
    if buf[0] == 0x16 {
        return sniff_tls(buf);
    }
    if looks_like_http(buf) {
        return sniff_http(buf);
    }
    Sniff::Other
}

fn looks_like_http(buf: &[u8]) -> bool {
    let token: Vec<u8> = buf
        .iter()
        .take(8)
        .take_while(|b| **b != b' ')
        .copied()
        .collect();
    if token.is_empty() || !token.iter().all(u8::is_ascii_uppercase) {
        return false;
    }
    // A method then a space, or a method still arriving.
    buf.len() > token.len() || buf.len() < 8
}

fn sniff_http(buf: &[u8]) -> Sniff {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() >= MAX_SNIFF {
            Sniff::Http(None)
        } else {
            Sniff::NeedMore
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let host = head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("host")
            .then(|| v.trim().to_string())
    });
    Sniff::Http(host.and_then(|h| valid_host(strip_port(&h))))
}

fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => h,
    }
}

/// A lower-case host name or address literal, or `None` if it is not one.
fn valid_host(h: &str) -> Option<String> {
    let h = h.trim_end_matches('.');
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b == b':');
    ok.then(|| h.to_ascii_lowercase())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reassembles the handshake message from consecutive TLS records and reads the SNI.
fn sniff_tls(buf: &[u8]) -> Sniff {
    let mut hs = Vec::new();
    let mut at = 0;
    loop {
        if buf.len() < at + 5 {
            return more_or(buf, Sniff::Tls(None));
        }
        if buf[at] != 0x16 {
            return Sniff::Tls(None);
        }
        let len = usize::from(u16::from_be_bytes([buf[at + 3], buf[at + 4]]));
        if buf.len() < at + 5 + len {
            return more_or(buf, Sniff::Tls(None));
        }
        hs.extend_from_slice(&buf[at + 5..at + 5 + len]);
        at += 5 + len;
        if hs.len() >= 4 {
            if hs[0] != 0x01 {
                return Sniff::Tls(None);
            }
            let need =
                4 + ((usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]));
            if hs.len() >= need {
                return Sniff::Tls(client_hello_sni(&hs[4..need]).and_then(|n| valid_host(&n)));
            }
        }
    }
}

fn more_or(buf: &[u8], fallback: Sniff) -> Sniff {
    if buf.len() >= MAX_SNIFF {
        fallback
    } else {
        Sniff::NeedMore
    }
}

/// A bounds-checked reader over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn client_hello_sni(body: &[u8]) -> Option<String> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut exts = Reader(r.vec16()?);
    while let Some(ty) = exts.u16() {
        let data = exts.vec16()?;
        if ty != 0 {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while let Some(kind) = list.u8() {
            let name = list.vec16()?;
            if kind == 0 {
                return std::str::from_utf8(name).ok().map(str::to_string);
            }
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TLS length field: `len` as two big-endian bytes (a fixture too long for one is a bug).
    fn len16(len: usize) -> [u8; 2] {
        u16::try_from(len)
            .expect("a test TLS field fits a 16-bit length")
            .to_be_bytes()
    }

    /// A minimal TLS 1.2-style ClientHello record carrying `sni` (or none).
    pub(crate) fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = sni {
            let n = name.as_bytes();
            let mut entry = vec![0u8];
            entry.extend_from_slice(&len16(n.len()));
            entry.extend_from_slice(n);
            let mut list = len16(entry.len()).to_vec();
            list.extend_from_slice(&entry);
            exts.extend_from_slice(&[0, 0]);
            exts.extend_from_slice(&len16(list.len()));
            exts.extend_from_slice(&list);
        }
        exts.extend_from_slice(&[0, 0x0b, 0, 2, 1, 0]); // ec_point_formats
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&len16(exts.len()));
        body.extend_from_slice(&exts);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&len16(body.len()));
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&len16(hs.len()));
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_sni() {
        let ch = client_hello(Some("API.Test.example"));
        assert_eq!(sniff(&ch), Sniff::Tls(Some("api.test.example".into())));
        for cut in [1, 5, 20, ch.len() - 1] {
            assert_eq!(sniff(&ch[..cut]), Sniff::NeedMore, "cut at {cut}");
        }
        assert_eq!(sniff(&client_hello(None)), Sniff::Tls(None));
        assert_eq!(
            sniff(&client_hello(Some("bad name\0.com"))),
            Sniff::Tls(None)
        );
    }

    #[test]
    fn tls_sni_split_across_records() {
        let ch = client_hello(Some("split.example"));
        let hs = &ch[5..];
        let (a, b) = hs.split_at(10);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 3, 1]);
            two.extend_from_slice(&len16(part.len()));
            two.extend_from_slice(part);
        }
        assert_eq!(sniff(&two), Sniff::Tls(Some("split.example".into())));
    }

    #[test]
    fn http_host() {
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\nhost: Example.COM:8080\r\nx: y\r\n\r\n"),
            Sniff::Http(Some("example.com".into()))
        );
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
            Sniff::Http(Some("::1".into()))
        );
        assert_eq!(sniff(b"GET / HTTP/1.1\r\nHost: ex"), Sniff::NeedMore);
        assert_eq!(sniff(b"GE"), Sniff::NeedMore);
        assert_eq!(sniff(b"GET / HTTP/1.0\r\n\r\n"), Sniff::Http(None));
        assert_eq!(sniff(b"SSH-2.0-OpenSSH_9.2\r\n"), Sniff::Other);
        assert_eq!(sniff(&[0u8, 1, 2, 3]), Sniff::Other);
    }
}
