//! The hub's HTTP error answer: a status and `{"error": "...", "field": "..."}`, where `field`
//! names the part of the request refused so a client can fix it without reading the hub's source.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::notification::InvalidField;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and what to do.
    pub message: String,
    /// The refused field (`level`, `[3].channel`, `since`...), when one is to blame.
    pub field: Option<String>,
}

impl ApiError {
    /// An error about no field in particular.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// A 400 naming `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// Puts `prefix` (e.g. `[3]`) in front of the field name, for an item of a batch.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = Some(match self.field {
            Some(field) if field.starts_with('[') => format!("{prefix}{field}"),
            Some(field) => format!("{prefix}.{field}"),
            None => prefix.to_owned(),
        });
        self
    }
}

impl From<InvalidField> for ApiError {
    fn from(invalid: InvalidField) -> Self {
        Self::field(invalid.field, invalid.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "field": self.field });
        (self.status, Json(body)).into_response()
    }
}
