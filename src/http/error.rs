//! HTTP errors: one JSON shape (`{"error": code, "message": text}`), mapped once, with no side
//! effects. Internal details are never sent: they ride in the response's extensions to the
//! edge layer, which logs them once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ops::call::Failure;
use crate::ops::{ErrorKind, OpsError};

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra headers (WWW-Authenticate, Retry-After).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// What only the log may see (internal and unavailable errors).
    detail: Option<String>,
}

/// The detail of an internal error, for the edge layer's log line; never sent.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            detail: None,
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }
}

impl From<OpsError> for HttpError {
    fn from(e: OpsError) -> Self {
        let failure = Failure::of(&e);
        let status = match failure.kind {
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Gone => StatusCode::GONE,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError {
            detail: failure.detail,
            ..HttpError::new(status, failure.kind.code(), failure.message)
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(json!({ "error": self.code, "message": self.message })),
        )
            .into_response();
        for (name, value) in self.headers {
            res.headers_mut().insert(name, value);
        }
        if let Some(detail) = self.detail {
            res.extensions_mut().insert(InternalDetail(detail));
        }
        res
    }
}

/// A JSON body extractor whose rejections (bad JSON, wrong content type, too large) come back in
/// our error shape instead of axum's plain text.
pub struct AppJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for AppJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(AppJson(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    _ => "bad_request",
                };
                // serde's message names the field and what was expected; it may echo input,
                // so keys are scrubbed.
                Err(HttpError::new(
                    status,
                    code,
                    crate::domain::audit::redact_text(&rejection.body_text()),
                ))
            }
        }
    }
}
