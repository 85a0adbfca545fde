//! `GET /v1/cdrs`: call detail records, as JSON pages, CSV or JSON Lines.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::Authed;
use crate::reply::{ok, reply};
use crate::state::AppState;

/// `GET /v1/cdrs`: call detail records (see [`tapir_api::cdr::CdrQueryParams`]). An application
/// limited to some profiles sees only the records of lines it may use.
pub(crate) async fn cdrs(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    query: Result<Query<tapir_api::cdr::CdrQueryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(cdrs) = &state.cdrs else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "cdrs_disabled",
            "call detail records are switched off in this service's configuration ([cdr] enabled)",
        )
        .into_response();
    };
    let params = match query {
        Ok(Query(p)) => p,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
                .into_response();
        }
    };
    let (mut q, format) = match tapir_cdr::CdrQuery::from_params(&params) {
        Ok(q) => q,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string())
                .into_response();
        }
    };
    if !c.admin {
        q.lines = Some(c.session.lines().into_iter().map(|l| l.id).collect());
    }
    let page = match cdrs.store.query(&q).await {
        Ok(p) => p,
        Err(e) => {
            state.metrics.store_error();
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_failed",
                e.to_string(),
            )
            .into_response();
        }
    };
    let records: Vec<tapir_api::cdr::Cdr> = page.records.iter().map(tapir_cdr::to_wire).collect();
    let text = |content_type: &'static str, body: String| {
        ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
    };
    match format {
        tapir_cdr::Format::Json => reply(ok(tapir_api::cdr::CdrPage {
            records,
            next: page.next,
        })),
        tapir_cdr::Format::Csv => {
            let mut body = tapir_api::cdr::csv_header();
            records
                .iter()
                .for_each(|r| body.push_str(&tapir_api::cdr::csv_row(r)));
            text("text/csv; charset=utf-8", body)
        }
        tapir_cdr::Format::Jsonl => {
            let body: String = records.iter().map(tapir_api::cdr::jsonl_line).collect();
            text("application/jsonl", body)
        }
    }
}
