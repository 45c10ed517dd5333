//! Which browser origins may open the hub's sockets, checked before any upgrade or poll.
//!
//! A browser always sends `Origin` on a WebSocket upgrade and on a cross-origin request, so a
//! request without one comes from a program (curl, a daemon, a CLI subscriber), which the
//! browser same-origin policy does not protect: it is let through. A request whose `Origin`
//! names the `Host` it was sent to comes from a page the hub itself served. Any other origin
//! must be on the list.

/// An allow-list of browser origins (`scheme://host[:port]`, compared case-insensitively), or
/// `*` for any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// Only same-origin pages and programs that send no `Origin`.
    pub fn same_origin_only() -> Self {
        Self::default()
    }

    /// The origins in `list`; an entry `*` allows every origin.
    pub fn new<I, S>(list: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut allowed = Self::default();
        for origin in list {
            let origin = origin.as_ref().trim();
            if origin == "*" {
                allowed.any = true;
            } else if !origin.is_empty() {
                allowed
                    .origins
                    .push(origin.trim_end_matches('/').to_ascii_lowercase());
            }
        }
        allowed
    }

    /// Whether a request with this `Origin` header (if any), sent to this `Host`, may go on.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        let origin = origin.trim().trim_end_matches('/');
        if let (Some(host), Some(authority)) = (host, authority(origin)) {
            if authority.eq_ignore_ascii_case(host.trim()) {
                return true;
            }
        }
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Whether `origin` is allowed because it is listed (or `*` is), not because it is the
    /// request's own host: such an origin gets CORS headers on the polling transport.
    pub fn lists(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/');
        self.any || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

fn authority(origin: &str) -> Option<&str> {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_same_origin_and_listed_origins_pass() {
        let allowed = AllowedOrigins::new(["http://gui.example:8080/"]);
        assert!(allowed.allows(None, Some("hub:4000")));
        assert!(allowed.allows(Some("http://hub:4000"), Some("HUB:4000")));
        assert!(allowed.allows(Some("HTTP://gui.example:8080"), Some("hub:4000")));
        assert!(!allowed.allows(Some("http://evil.example"), Some("hub:4000")));
        assert!(!allowed.allows(Some("null"), Some("hub:4000")));
        assert!(!allowed.allows(Some("http://hub:4000/x"), Some("hub:4000")));
        assert!(!AllowedOrigins::same_origin_only().allows(Some("http://a"), None));
        assert!(AllowedOrigins::new(["*"]).allows(Some("http://a"), None));
    }
}
