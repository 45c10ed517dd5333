//! Where to send load: [`Target::parse`] reads `http`, `https`, `ws`, `wss`, `sse`, `sses`,
//! `h2`, `h2c`, `grpc`, `grpcs`, `poll`, `polls`, `long-poll` and `long-polls` URLs.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The schemes the load generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// HTTP/1.1 over TCP.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// WebSocket over TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// Server-Sent Events: an HTTP/1.1 `GET` of a `text/event-stream` over TCP.
    Sse,
    /// Server-Sent Events over TLS.
    Sses,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
    /// HTTP/2 over TCP with prior knowledge (RFC 9113 §3.3).
    H2c,
    /// gRPC over HTTP/2 over TCP (prior knowledge).
    Grpc,
    /// gRPC over HTTP/2 over TLS (ALPN `h2`).
    Grpcs,
    /// Plain polling: HTTP/1.1 `GET`s of the SSE app's `/poll?after=ID` at the push
    /// interval, over one keep-alive connection (push workload only).
    Poll,
    /// Plain polling over TLS.
    Polls,
    /// Long polling: HTTP/1.1 `GET`s of `/poll/long?after=ID`, each asked as soon as the
    /// last was answered (push workload only).
    #[serde(rename = "long-poll")]
    LongPoll,
    /// Long polling over TLS.
    #[serde(rename = "long-polls")]
    LongPolls,
}

impl Scheme {
    /// The schemes [`Target::parse`] accepts, for messages.
    pub const ACCEPTED: &'static str =
        "http://, https://, ws://, wss://, sse://, sses://, h2://, h2c://, grpc://, grpcs://, poll://, polls://, long-poll://, long-polls://";

    /// The URL spelling: `http`, `https`, `ws`, `wss`, `sse`, `sses`, `h2`, `h2c`, `grpc`,
    /// `grpcs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Ws => "ws",
            Self::Wss => "wss",
            Self::Sse => "sse",
            Self::Sses => "sses",
            Self::H2 => "h2",
            Self::H2c => "h2c",
            Self::Grpc => "grpc",
            Self::Grpcs => "grpcs",
            Self::Poll => "poll",
            Self::Polls => "polls",
            Self::LongPoll => "long-poll",
            Self::LongPolls => "long-polls",
        }
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(
            self,
            Self::Https
                | Self::Wss
                | Self::Sses
                | Self::H2
                | Self::Grpcs
                | Self::Polls
                | Self::LongPolls
        )
    }

    /// Whether the connection speaks HTTP/2 (h2, h2c, grpc, grpcs).
    pub fn is_h2(self) -> bool {
        matches!(self, Self::H2 | Self::H2c | Self::Grpc | Self::Grpcs)
    }

    /// Whether exchanges are gRPC calls.
    pub fn is_grpc(self) -> bool {
        matches!(self, Self::Grpc | Self::Grpcs)
    }

    /// Whether this is a WebSocket scheme.
    pub fn is_ws(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    /// Whether this is a Server-Sent Events scheme (an HTTP URL of an event stream).
    pub fn is_sse(self) -> bool {
        matches!(self, Self::Sse | Self::Sses)
    }

    /// Whether this is a polling scheme (plain or long): push events fetched by requests.
    pub fn is_poll(self) -> bool {
        matches!(
            self,
            Self::Poll | Self::Polls | Self::LongPoll | Self::LongPolls
        )
    }

    /// Whether this is a long-polling scheme.
    pub fn is_long_poll(self) -> bool {
        matches!(self, Self::LongPoll | Self::LongPolls)
    }

    /// 80 or 443 (RFC 9110 §4.2, RFC 6455 §3); the HTTP/2 and gRPC schemes are not
    /// registered URL schemes, so they take their transport's.
    pub fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "http" => Self::Http,
            "https" => Self::Https,
            "ws" => Self::Ws,
            "wss" => Self::Wss,
            "sse" => Self::Sse,
            "sses" => Self::Sses,
            "h2" => Self::H2,
            "h2c" => Self::H2c,
            "grpc" => Self::Grpc,
            "grpcs" => Self::Grpcs,
            "poll" => Self::Poll,
            "polls" => Self::Polls,
            "long-poll" => Self::LongPoll,
            "long-polls" => Self::LongPolls,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed URL: scheme, host, port and request target (path and query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The URL's scheme.
    pub scheme: Scheme,
    /// Host name or IP address as written, without IPv6 brackets. Sent as the TLS server name
    /// and (with the port) in `Host`.
    pub host: String,
    /// TCP port: the URL's, or the scheme's default.
    pub port: u16,
    /// Request target: path and query, `/` when the URL has neither. The fragment is dropped
    /// (it is never sent, RFC 9110 §4.2.5).
    pub path: String,
}

impl Target {
    /// Parses `scheme://host[:port][/path][?query]`. User info (`user@`) is rejected rather than
    /// silently sent nowhere; a scheme not in [`Scheme::ACCEPTED`] is an error naming them.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |reason: &'static str| Error::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let (scheme_name, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("it has no scheme; write e.g. http://localhost:3000/"))?;
        let scheme = Scheme::from_name(scheme_name).ok_or_else(|| Error::UnsupportedScheme {
            url: url.to_owned(),
            scheme: scheme_name.to_owned(),
        })?;
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user info (user@host) is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address is missing its closing `]`"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("unexpected text after `]`"))?,
                    ),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("the host contains whitespace or control characters"));
        }
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port is not a number from 1 to 65535")),
                Ok(p) => p,
            },
        };
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad(
                "the path contains spaces or control characters; percent-encode them",
            ));
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The `Host` header value: `host:port`, brackets around IPv6 addresses.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_schemes() {
        let t = Target::parse("wss://localhost:3003/ws").unwrap();
        assert_eq!(
            t,
            Target {
                scheme: Scheme::Wss,
                host: "localhost".into(),
                port: 3003,
                path: "/ws".into()
            }
        );
        let t = Target::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            (t.scheme, t.port, t.path.as_str()),
            (Scheme::Http, 3000, "/")
        );
        let t = Target::parse("HTTPS://example.test/echo?msg=hi#frag").unwrap();
        assert_eq!((t.scheme, t.port), (Scheme::Https, 443));
        assert_eq!(t.path, "/echo?msg=hi");
        let t = Target::parse("ws://host?x=1").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/?x=1"));
    }

    #[test]
    fn parses_the_sse_schemes() {
        let t = Target::parse("sse://127.0.0.1:3004/events").unwrap();
        assert_eq!(
            (t.scheme, t.port, t.path.as_str()),
            (Scheme::Sse, 3004, "/events")
        );
        assert!(t.scheme.is_sse() && !t.scheme.is_tls() && !t.scheme.is_ws());
        let t = Target::parse("sses://localhost/events").unwrap();
        assert_eq!((t.scheme, t.port), (Scheme::Sses, 443));
        assert!(t.scheme.is_tls());
    }

    #[test]
    fn parses_the_http2_schemes() {
        for (url, scheme, port, tls) in [
            ("h2://localhost/echo", Scheme::H2, 443, true),
            ("h2c://localhost:3005", Scheme::H2c, 3005, false),
            ("grpc://127.0.0.1:3006", Scheme::Grpc, 3006, false),
            ("GRPCS://localhost", Scheme::Grpcs, 443, true),
        ] {
            let t = Target::parse(url).unwrap();
            assert_eq!((t.scheme, t.port, t.scheme.is_tls()), (scheme, port, tls));
            assert!(t.scheme.is_h2() && !t.scheme.is_ws(), "{url}");
            assert_eq!(
                t.scheme.is_grpc(),
                url.to_ascii_lowercase().starts_with("grpc")
            );
        }
        assert!(!Scheme::Https.is_h2());
    }

    #[test]
    fn parses_the_polling_schemes() {
        let t = Target::parse("long-poll://127.0.0.1:3004/poll/long").unwrap();
        assert_eq!(
            (t.scheme, t.path.as_str()),
            (Scheme::LongPoll, "/poll/long")
        );
        assert!(t.scheme.is_poll() && t.scheme.is_long_poll() && !t.scheme.is_sse());
        let t = Target::parse("polls://localhost/poll").unwrap();
        assert_eq!((t.scheme, t.port), (Scheme::Polls, 443));
        assert!(t.scheme.is_poll() && !t.scheme.is_long_poll() && t.scheme.is_tls());
        assert_eq!(t.to_string(), "polls://localhost:443/poll");
    }

    #[test]
    fn parses_ipv6() {
        let t = Target::parse("ws://[::1]:9000/ws").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.authority(), "[::1]:9000");
        assert_eq!(t.to_string(), "ws://[::1]:9000/ws");
        assert_eq!(Target::parse("https://[::1]/").unwrap().port, 443);
    }

    #[test]
    fn rejects_bad_urls() {
        let err = Target::parse("ftp://localhost:21/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ftp") && err.contains("wss://"), "{err}");
        for url in [
            "localhost:3000",
            "http://:3000/",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://u@h/",
            "http://[::1/",
            "http://h/a b",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }
}
