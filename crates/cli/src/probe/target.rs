//! The URL `probe` was given: scheme, host, port and request target.

/// One of the four schemes `probe` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
    /// `ws://`
    Ws,
    /// `wss://`
    Wss,
}

impl Scheme {
    /// Whether the connection starts with a TLS handshake.
    pub(super) fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Wss)
    }

    /// Whether the request is a WebSocket upgrade.
    pub(super) fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }
}

/// A parsed `scheme://host[:port]/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// The scheme.
    pub(super) scheme: Scheme,
    /// The host without brackets: `localhost`, `127.0.0.1`, `::1`.
    pub(super) host: String,
    /// The port, explicit or the scheme's default.
    pub(super) port: u16,
    /// Origin-form request target: `/`, `/ws?x=1`.
    pub(super) path: String,
    /// The `Host` header value: the host (bracketed if IPv6) and the port when not default.
    pub(super) authority: String,
}

/// Parses an http, https, ws or wss URL; the error says what is wrong with it.
pub(super) fn parse(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("`{url}` is not a URL: write it with its scheme, e.g. `https://{url}`")
    })?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "ws" => Scheme::Ws,
        "wss" => Scheme::Wss,
        other => {
            return Err(format!(
                "`{other}://` is not a scheme probe speaks: use http, https, ws or wss"
            ))
        }
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (hostport, tail) = rest.split_at(end);
    if hostport.contains('@') {
        return Err(format!(
            "`{url}` has user information before the host; probe does not send credentials"
        ));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: an IPv6 address needs its closing `]`"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => {
                return Err(format!(
                    "`{url}`: unexpected `{after}` after the IPv6 address"
                ))
            }
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let port = match port {
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{url}`: `{text}` is not a port (1-65535)"))?,
        None => scheme.default_port(),
    };
    // The fragment never goes on the wire (RFC 9110 §4.2.4).
    let path = tail.split('#').next().unwrap_or_default();
    let path = if path.is_empty() || path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let authority = if port == scheme.default_port() {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(Target {
        scheme,
        host: host.to_owned(),
        port,
        path,
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_schemes() {
        let t = parse("wss://localhost:3003/ws?x=1#frag").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.scheme, Scheme::Wss);
        assert_eq!((t.host.as_str(), t.port), ("localhost", 3003));
        assert_eq!(t.path, "/ws?x=1");
        assert_eq!(t.authority, "localhost:3003");
        let t = parse("http://[::1]").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 80, "/"));
        assert_eq!(t.authority, "[::1]");
        let t = parse("https://example.test?q").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.port, t.path.as_str()), (443, "/?q"));
    }

    #[test]
    fn refuses_what_it_cannot_probe() {
        for bad in [
            "localhost:3000",
            "ftp://x/",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://[::1/",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
