//! Who may publish (API keys), who may subscribe to what (JWTs), and which pages may open a
//! subscriber connection (the Origin allow-list).

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::digest::{digest, SHA256};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::notification::ChannelName;

/// A key file or JWT key the hub cannot use; the message says which and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The API key file holds no key.
    #[error("the API key file holds no key; put one key per line (16 characters or more)")]
    NoApiKeys,
    /// An API key is too short to resist guessing.
    #[error(
        "API key on line {line} is {len} characters; use 16 or more (e.g. `openssl rand -hex 32`)"
    )]
    WeakApiKey {
        /// 1-based line number.
        line: usize,
        /// Its length.
        len: usize,
    },
    /// The HS256 secret is too short.
    #[error("the JWT secret is {0} bytes; HS256 needs 32 or more (e.g. `openssl rand -hex 32`)")]
    WeakJwtSecret(usize),
    /// The public key is neither an RSA nor an EC PEM key.
    #[error("the JWT public key is neither an RSA (RS256) nor a P-256 EC (ES256) PEM public key")]
    BadPublicKey,
}

/// The API keys publishers present as `Authorization: Bearer KEY`.
#[derive(Clone)]
pub struct ApiKeys {
    // Digests, so a comparison takes the same time whatever the presented key's length.
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

impl ApiKeys {
    /// Keys from a key file's text: one per line; blank lines and lines starting with `#` are
    /// skipped, surrounding whitespace is not part of a key.
    pub fn parse(text: &str) -> Result<Self, AuthConfigError> {
        let mut digests = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let key = line.trim();
            if key.is_empty() || key.starts_with('#') {
                continue;
            }
            if key.len() < 16 {
                return Err(AuthConfigError::WeakApiKey {
                    line: index + 1,
                    len: key.len(),
                });
            }
            digests.push(sha256(key.as_bytes()));
        }
        if digests.is_empty() {
            return Err(AuthConfigError::NoApiKeys);
        }
        Ok(Self { digests })
    }

    /// Whether `presented` is one of the keys, compared in constant time against every key.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = sha256(presented.as_bytes());
        let mut found = subtle::Choice::from(0);
        for key in &self.digests {
            found |= key.ct_eq(&presented);
        }
        found.into()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// The token in `Authorization: Bearer TOKEN`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// WebSocket close code of a subscriber whose token expired (SSE: the code of the final
/// `error` event; socket.io: of the `hub_error` event before the disconnect).
pub const TOKEN_EXPIRED_CLOSE: u16 = 4001;
/// Why a subscriber whose token expired is disconnected.
pub const TOKEN_EXPIRED_REASON: &str =
    "token expired: reconnect with a fresh token and recover from your last positions";

/// What a subscriber may subscribe to, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's `sub`, for logs.
    pub subject: Option<String>,
    /// `None`: every channel (no JWT key configured). Otherwise exact names, or prefixes
    /// written with a trailing `*`.
    patterns: Option<Vec<String>>,
    /// When the hub stops accepting the token (its `exp` plus the clock leeway); `None` with
    /// no token.
    valid_until: Option<SystemTime>,
}

impl Grant {
    /// Every channel: what subscribers get when no JWT key is configured.
    pub fn open() -> Self {
        Self {
            subject: None,
            patterns: None,
            valid_until: None,
        }
    }

    /// How long the connection this grant opened may stay: until the hub would refuse its
    /// token on a reconnect, so a client never holds a subscription its token no longer
    /// grants. `None`: no token, no end.
    pub fn time_left(&self) -> Option<Duration> {
        self.valid_until.map(|until| {
            until
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }

    /// When the connection this grant opened must close, on tokio's clock.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.time_left()
            .map(|left| tokio::time::Instant::now() + left)
    }

    /// Whether `channel` may be subscribed to.
    pub fn allows(&self, channel: &ChannelName) -> bool {
        let Some(patterns) = &self.patterns else {
            return true;
        };
        patterns
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => channel.as_str().starts_with(prefix),
                None => pattern == channel.as_str(),
            })
    }
}

/// Why a token was refused (answered with 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenRefused(pub String);

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    // required and checked by the validation before this is read
    exp: u64,
}

/// Checks subscriber JWTs: signature, algorithm, `exp` (required).
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtVerifier({:?})", self.validation.algorithms)
    }
}

impl JwtVerifier {
    /// HS256 with a shared secret of 32 bytes or more.
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthConfigError> {
        if secret.len() < 32 {
            return Err(AuthConfigError::WeakJwtSecret(secret.len()));
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// RS256 or ES256, whichever the PEM public key is for.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Self, AuthConfigError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(key, Algorithm::RS256));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::new(key, Algorithm::ES256));
        }
        Err(AuthConfigError::BadPublicKey)
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.validate_aud = false;
        // clocks of the token issuer and the hub may differ by a little, not by a minute
        validation.leeway = 5;
        Self { key, validation }
    }

    /// The channels `token` grants, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenRefused> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
                TokenRefused(match err.kind() {
                    ErrorKind::ExpiredSignature => "token expired; get a new one".to_owned(),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("token has no `{claim}` claim")
                    }
                    ErrorKind::InvalidAlgorithm => format!(
                        "token is not signed with {:?}, the algorithm this hub is configured for",
                        self.validation.algorithms
                    ),
                    _ => format!("token refused: {err}"),
                })
            })?;
        let valid_until = UNIX_EPOCH
            .checked_add(Duration::from_secs(
                data.claims.exp.saturating_add(self.validation.leeway),
            ))
            .unwrap_or_else(far_future);
        // jsonwebtoken compares whole seconds, so it accepts a token up to a second past
        // exp + leeway: refuse it here rather than open a connection only to close it (4001).
        if valid_until <= SystemTime::now() {
            return Err(TokenRefused("token expired; get a new one".to_owned()));
        }
        Ok(Grant {
            subject: data.claims.sub,
            patterns: Some(data.claims.channels),
            valid_until: Some(valid_until),
        })
    }
}

fn far_future() -> SystemTime {
    // an `exp` past what the clock can hold: the token does not end within any connection
    SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Completes at `deadline`, never without one: the arm of a connection's `select!` that ends
/// it when its token expires.
pub async fn expired(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Pages allowed to open subscriber connections. A request without `Origin` is not from a
/// browser page and passes; a page of the hub's own origin passes when the hub is addressed
/// by IP or a localhost name.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allowed: HashSet<String>,
    any: bool,
}

impl OriginPolicy {
    /// Allows the hub's own origin and `origins` (`*` allows every origin).
    pub fn new(origins: &[String]) -> Self {
        Self {
            any: origins.iter().any(|o| o == "*"),
            allowed: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// `Ok` when `headers` come from an allowed page; otherwise the refused origin.
    pub fn check<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(None);
        };
        let origin = origin
            .to_str()
            .map_err(|_| "an Origin that is not ASCII".to_owned())?;
        if self.any || self.allowed.contains(&origin.to_ascii_lowercase()) {
            return Ok(Some(origin));
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .split_once("://")
            .map_or("", |(_, rest)| rest.trim_end_matches('/'));
        // Same origin counts only under an IP address or a localhost name: a DNS-rebinding
        // page (evil.example resolving to the hub) has a matching Host and Origin too.
        if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) && is_ip_or_localhost(host) {
            return Ok(Some(origin));
        }
        Err(origin.to_owned())
    }

    /// Whether `origin` is allowed because it is listed (or `*` is), not because it is the
    /// request's own origin: such a page gets CORS headers on socket.io's polling transport.
    pub fn lists(&self, origin: &str) -> bool {
        self.any
            || self
                .allowed
                .contains(&origin.trim_end_matches('/').to_ascii_lowercase())
    }
}

fn is_ip_or_localhost(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_match_exactly() {
        let keys = ApiKeys::parse("# comment\n\n  0123456789abcdef  \nfedcba9876543210fedc\n")
            .expect("keys");
        assert!(keys.accepts("0123456789abcdef"));
        assert!(keys.accepts("fedcba9876543210fedc"));
        assert!(!keys.accepts("0123456789abcdeF"));
        assert!(!keys.accepts(""));
        assert!(matches!(
            ApiKeys::parse("short"),
            Err(AuthConfigError::WeakApiKey { line: 1, len: 5 })
        ));
        assert!(matches!(
            ApiKeys::parse("# none\n"),
            Err(AuthConfigError::NoApiKeys)
        ));
    }

    #[test]
    fn grants_match_names_and_prefixes() {
        let grant = Grant {
            subject: None,
            patterns: Some(vec!["ops".into(), "alerts.*".into()]),
            valid_until: None,
        };
        let allows = |c: &str| grant.allows(&c.parse().expect("channel"));
        assert!(allows("ops") && allows("alerts.disk") && allows("alerts."));
        assert!(!allows("ops2") && !allows("alerts") && !allows("x"));
    }

    #[test]
    fn a_grant_lasts_until_the_token_would_be_refused() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let verifier = JwtVerifier::hs256(secret).expect("secret");
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 10;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"channels": ["ops"], "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("token");
        let left = verifier
            .verify(&token)
            .expect("valid")
            .time_left()
            .expect("a token grant ends");
        // exp is 9 to 10 s away, plus the 5 s leeway
        assert!(
            left > Duration::from_secs(13) && left <= Duration::from_secs(15),
            "{left:?}"
        );
        assert_eq!(Grant::open().time_left(), None);

        // exp + leeway is this very second: jsonwebtoken alone would accept it
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            - 5;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"channels": ["ops"], "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("token");
        let refused = verifier.verify(&token).expect_err("expired");
        assert!(refused.0.contains("expired"), "{refused:?}");
    }

    #[test]
    fn origins() {
        let policy = OriginPolicy::new(&["https://app.example".to_owned()]);
        let headers = |origin: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:4000".parse().expect("host"));
            h.insert(header::ORIGIN, origin.parse().expect("origin"));
            h
        };
        assert!(policy.check(&headers("https://app.example")).is_ok());
        assert!(policy.check(&headers("http://127.0.0.1:4000")).is_ok());
        let mut rebound = headers("http://rebind.example:4000");
        rebound.insert(header::HOST, "rebind.example:4000".parse().expect("host"));
        assert!(
            policy.check(&rebound).is_err(),
            "a DNS-rebinding page passed"
        );
        assert!(is_ip_or_localhost("[::1]:4000") && is_ip_or_localhost("localhost"));
        assert!(policy.check(&headers("https://evil.example")).is_err());
        assert!(policy.check(&headers("null")).is_err());
        assert!(policy.check(&HeaderMap::new()).is_ok());
    }
}
