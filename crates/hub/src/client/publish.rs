//! Publishing: one `POST /api/publish` per publication over a fresh connection, and retries
//! with backoff for as long as the caller allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::backoff::Backoff;
use super::stream::{ClientError, HubUrl};
use crate::hub::Published;
use crate::notification::Publication;

/// The most of an answer read: the hub's answers to a publish are a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;
/// How long one attempt (connect, send, answer) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a publication was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The hub refused it (a 4xx other than 429): sending it again will not help.
    #[error("the hub refused the notification ({status}): {message}{}", field.as_ref().map(|f| format!(" [field: {f}]")).unwrap_or_default())]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The hub's `error` text.
        message: String,
        /// The field the hub named, if any.
        field: Option<String>,
    },
    /// No answer, a 5xx or a 429: worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    /// The URL or TLS set-up cannot work.
    #[error("{0}")]
    Setup(String),
}

impl PublishError {
    /// Whether retrying the same publication later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<ClientError> for PublishError {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::BadUrl(why) => Self::Setup(why),
            ClientError::Connection(why) => Self::Unavailable(why),
        }
    }
}

/// Publishes to one hub. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: HubUrl,
    api_key: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Publisher {
    /// A publisher to `url`, sending `Authorization: Bearer api_key` when given; `tls` is
    /// needed for an `https` URL.
    pub fn new(
        url: HubUrl,
        api_key: Option<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner { url, api_key, tls }),
        }
    }

    /// The hub's URL.
    pub fn url(&self) -> &HubUrl {
        &self.inner.url
    }

    /// One attempt.
    pub async fn publish(&self, publication: &Publication) -> Result<Published, PublishError> {
        let body = serde_json::to_vec(publication)
            .map_err(|err| PublishError::Setup(format!("cannot encode the publication: {err}")))?;
        tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(body))
            .await
            .map_err(|_| {
                PublishError::Unavailable(format!(
                    "no answer from {} within {ATTEMPT_TIMEOUT:?}",
                    self.inner.url.authority()
                ))
            })?
    }

    /// Attempts until one is accepted, refused, or `retry_for` has passed, waiting `backoff`
    /// between them; `on_retry` hears each retryable failure and the wait before the next try.
    /// Retrying is safe only with an idempotency key in `publication`.
    pub async fn publish_with_retry(
        &self,
        publication: &Publication,
        retry_for: Duration,
        mut backoff: Backoff,
        mut on_retry: impl FnMut(&PublishError, Duration),
    ) -> Result<Published, PublishError> {
        let deadline = Instant::now() + retry_for;
        loop {
            match self.publish(publication).await {
                Err(err) if err.is_retryable() => {
                    let wait = backoff.next_delay();
                    if Instant::now() + wait > deadline {
                        return Err(err);
                    }
                    on_retry(&err, wait);
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn attempt(&self, body: Vec<u8>) -> Result<Published, PublishError> {
        let url = &self.inner.url;
        let stream = url
            .connect(self.inner.tls.as_ref(), ATTEMPT_TIMEOUT)
            .await?;
        let lost = |err: hyper::Error| {
            PublishError::Unavailable(format!(
                "the connection to {} failed: {err}",
                url.authority()
            ))
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(lost)?;
        let driver = tokio::spawn(connection);
        let mut request = Request::post(format!("{}/api/publish", url.prefix))
            .header(HOST, url.authority())
            .header(CONTENT_TYPE, "application/json");
        if let Some(key) = &self.inner.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| PublishError::Setup(format!("cannot build the request: {err}")))?;
        let result = async {
            let response = sender.send_request(request).await.map_err(lost)?;
            let status = response.status();
            let answer = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|err| {
                    PublishError::Unavailable(format!("reading the hub's answer failed: {err}"))
                })?
                .to_bytes();
            interpret(status, &answer)
        }
        .await;
        driver.abort();
        result
    }
}

/// The hub's answer to a publish (its status and body) as a result: 202 with where the
/// notification stands, or why not.
pub fn parse_publish_answer(status: u16, answer: &[u8]) -> Result<Published, PublishError> {
    match StatusCode::from_u16(status) {
        Ok(status) => interpret(status, answer),
        Err(_) => Err(PublishError::Unavailable(format!(
            "the hub answered with status {status}, which HTTP does not have"
        ))),
    }
}

fn interpret(status: StatusCode, answer: &[u8]) -> Result<Published, PublishError> {
    #[derive(serde::Deserialize)]
    struct ErrorAnswer {
        error: String,
        #[serde(default)]
        field: Option<String>,
    }
    if status == StatusCode::ACCEPTED {
        return serde_json::from_slice(answer).map_err(|err| {
            PublishError::Unavailable(format!(
                "the hub answered 202 with an unreadable body: {err}"
            ))
        });
    }
    let (message, field) = match serde_json::from_slice::<ErrorAnswer>(answer) {
        Ok(error) => (error.error, error.field),
        Err(_) => (String::from_utf8_lossy(answer).trim().to_owned(), None),
    };
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(PublishError::Unavailable(format!(
            "the hub answered {status}: {message}"
        )))
    } else {
        Err(PublishError::Refused {
            status: status.as_u16(),
            message,
            field,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ok = interpret(
            StatusCode::ACCEPTED,
            br#"{"channel":"ops","offset":3,"epoch":"e1","duplicate":false}"#,
        )
        .expect("accepted");
        assert_eq!((ok.offset, ok.epoch.as_str()), (3, "e1"));
        let refused = interpret(
            StatusCode::BAD_REQUEST,
            br#"{"error":"level: must be one of info","field":"level"}"#,
        )
        .expect_err("400");
        assert!(!refused.is_retryable());
        assert!(refused.to_string().contains("[field: level]"), "{refused}");
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(interpret(status, b"busy")
                .expect_err("retry")
                .is_retryable());
        }
    }
}
