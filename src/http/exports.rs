//! `GET /audit/exports/{name}`: an `audit_export` bundle, to the key or operator that made it
//! (authenticated like `/mcp`, which puts the principal in the request). Whether the caller
//! may have it, and the audit record of the download, are the use case's.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::error::HttpError;
use crate::domain::principal::Principal;
use crate::ops::{self, CallMeta};

pub async fn download(
    State(state): State<HttpState>,
    Extension(principal): Extension<Principal>,
    Extension(meta): Extension<CallMeta>,
    Path(name): Path<String>,
) -> Response {
    match ops::audit_export::fetch(&state.app, &principal, meta, &name).await {
        Ok(bytes) => {
            let mut res = (StatusCode::OK, Body::from(bytes)).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            res
        }
        Err(e) => HttpError::from(e).into_response(),
    }
}
