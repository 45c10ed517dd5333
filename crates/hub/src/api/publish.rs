//! `POST /api/publish` and `POST /api/batch`: parse, check, publish.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::app::SharedState;
use crate::broker::BrokerError;
use crate::error::ApiError;
use crate::hub::HubError;
use crate::notification::{Publication, PublicationLimits};

/// A publication from a JSON body, checked against `limits`. The error names the field.
pub fn parse_publication(
    bytes: &[u8],
    limits: &PublicationLimits,
) -> Result<Publication, ApiError> {
    let publication: Publication = from_json(bytes)?;
    publication.validate(limits)?;
    Ok(publication)
}

/// A batch (a JSON array of publications) of at most `max_batch`, each checked against
/// `limits`. The error names the item and field (`[3].level`); nothing of a refused batch is
/// published.
pub fn parse_batch(
    bytes: &[u8],
    limits: &PublicationLimits,
    max_batch: usize,
) -> Result<Vec<Publication>, ApiError> {
    let batch: Vec<Publication> = from_json(bytes)?;
    if batch.len() > max_batch {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "the batch has {} publications, at most {max_batch} allowed; split it",
                batch.len()
            ),
            field: Some("batch".to_owned()),
        });
    }
    if batch.is_empty() {
        return Err(ApiError::field("batch", "the batch is empty"));
    }
    for (index, publication) in batch.iter().enumerate() {
        publication
            .validate(limits)
            .map_err(|invalid| ApiError::from(invalid).within(&format!("[{index}]")))?;
    }
    Ok(batch)
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(field_error)?;
    deserializer.end().map_err(|err| {
        ApiError::field(
            "(body)",
            format!("trailing characters after the JSON value: {err}"),
        )
    })?;
    Ok(value)
}

/// Names the field a JSON error is about: serde's path to it, plus the name an unknown or
/// missing field error quotes (serde reports those at the enclosing object).
fn field_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let message = inner.to_string();
    let quoted = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let field = match (path.as_str(), quoted) {
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_owned()
        }
        (".", Some(name)) => name.to_owned(),
        (path, Some(name)) => format!("{path}.{name}"),
        (_, None) if inner.is_syntax() || inner.is_eof() => "(body)".to_owned(),
        (".", None) => "(body)".to_owned(),
        (path, None) => path.to_owned(),
    };
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("the body is not valid JSON: {message}")
    } else {
        format!("{field}: {message}")
    };
    ApiError::field(field, message)
}

/// The body, refused with 413 past `limit` bytes without reading more than that.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the request body is over {limit} bytes, the most this endpoint takes"),
        field: Some("(body)".to_owned()),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("reading the request body failed: {err}"),
        )),
    }
}

/// The hub's own refusals keep their status; a broker that cannot serve is 503 with its
/// message (which says what to check), so publishers retry later.
pub(crate) fn broker_error(err: &BrokerError) -> ApiError {
    match err {
        BrokerError::Hub(HubError::TooManyChannels { .. }) => ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: err.to_string(),
            field: Some("channel".to_owned()),
        },
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

pub(super) async fn publish(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    state.authorize_publish(&headers, peer)?;
    let bytes = read_body(&headers, body, state.config.limits.max_publish_bytes).await?;
    let publication = parse_publication(&bytes, &state.config.publication_limits)?;
    let published = state
        .broker
        .publish(publication)
        .await
        .map_err(|e| broker_error(&e))?;
    Ok((StatusCode::ACCEPTED, Json(published)).into_response())
}

pub(super) async fn batch(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    state.authorize_publish(&headers, peer)?;
    let limits = &state.config.limits;
    let bytes = read_body(&headers, body, limits.max_batch_bytes).await?;
    let batch = parse_batch(&bytes, &state.config.publication_limits, limits.max_batch)?;
    let mut results = Vec::with_capacity(batch.len());
    for (index, publication) in batch.into_iter().enumerate() {
        match state.broker.publish(publication).await {
            Ok(published) => results.push(published),
            Err(err) => {
                // The items before this one are published: say which, so a retry (with
                // idempotency keys) can resend the rest.
                let mut error = broker_error(&err).within(&format!("[{index}]"));
                error.message = format!(
                    "{}; the first {index} publications of the batch were published",
                    error.message
                );
                return Err(error);
            }
        }
    }
    Ok((StatusCode::ACCEPTED, Json(results)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(bytes: &str) -> Option<String> {
        parse_publication(bytes.as_bytes(), &PublicationLimits::default())
            .expect_err(bytes)
            .field
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field(r#"{"channel":"ops","level":"fatal","body":"x"}"#).as_deref(),
            Some("level")
        );
        assert_eq!(
            field(r#"{"channel":"ops","level":"info","body":"x","colour":1}"#).as_deref(),
            Some("colour")
        );
        assert_eq!(
            field(r#"{"level":"info","body":"x"}"#).as_deref(),
            Some("channel")
        );
        assert_eq!(
            field(r#"{"channel":"a b","level":"info","body":"x"}"#).as_deref(),
            Some("channel")
        );
        assert_eq!(
            field(r#"{"channel":"ops","level":"info","body":7}"#).as_deref(),
            Some("body")
        );
        assert_eq!(field(r#"{"channel":"ops","#).as_deref(), Some("(body)"));
        assert_eq!(
            field(r#"{"channel":"ops","level":"info"}"#).as_deref(),
            Some("body")
        );
        let limits = PublicationLimits::default();
        let batch = r#"[{"channel":"ops","level":"info","body":"x"},{"channel":"ops","level":"bad","body":"x"}]"#;
        assert_eq!(
            parse_batch(batch.as_bytes(), &limits, 10)
                .expect_err("bad level")
                .field
                .as_deref(),
            Some("[1].level")
        );
        let empty_body =
            r#"[{"channel":"ops","level":"info","body":"x"},{"channel":"ops","level":"info"}]"#;
        assert_eq!(
            parse_batch(empty_body.as_bytes(), &limits, 10)
                .expect_err("empty")
                .field
                .as_deref(),
            Some("[1].body")
        );
        let two = r#"[{"channel":"ops","level":"info","body":"x"},{"channel":"ops","level":"info","body":"y"}]"#;
        assert_eq!(
            parse_batch(two.as_bytes(), &limits, 2).map(|b| b.len()),
            Ok(2)
        );
        let err = parse_batch(two.as_bytes(), &limits, 1).expect_err("too many");
        assert_eq!(
            (err.status, err.field.as_deref()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("batch"))
        );
    }
}
