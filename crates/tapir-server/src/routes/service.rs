//! The service itself: health, the OpenAPI document, the status table, the route table, address
//! translation and a log-on's snapshot.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tapir::Engine;
use tapir::core::route::DefaultRoute;
use tapir::translate::TranslateOptions;
use tapir_api as wire;
use tapir_api::{DefaultRouteRequest, RouteRequest, TranslateRequest};

use crate::api::{call_dto, status_row, translated};
use crate::error::ApiError;
use crate::extract::{Authed, Body};
use crate::metrics::Holding;
use crate::reply::{counted, ok, reply};
use crate::state::{AppState, NetworkLogon};
use crate::store::RouteChange;

/// The OpenAPI document, built once.
pub(crate) async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        crate::openapi::document()
            .to_json()
            .unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string())
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.clone(),
    )
        .into_response()
}

/// `GET /healthz`.
pub(crate) async fn healthz() -> Json<wire::Health> {
    Json(wire::Health {
        status: "ok".to_owned(),
    })
}

/// `GET /v1/status`.
pub(crate) async fn status(Authed(c): Authed) -> Response {
    let rows: Vec<wire::StatusRow> = c.session.status().into_iter().map(status_row).collect();
    reply(ok(rows))
}

/// The route table as the API shows it.
pub(crate) fn routes_dto(engine: &Engine) -> wire::Routes {
    let (routes, default) = engine.routes();
    wire::Routes {
        routes: routes
            .into_iter()
            .map(|r| wire::Route {
                class: r.class,
                application: r.application,
                set_at_ms: r
                    .set_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            })
            .collect(),
        default: default.to_string(),
    }
}

/// `GET /v1/routes`.
pub(crate) async fn routes(State(state): State<Arc<AppState>>, Authed(_): Authed) -> Response {
    reply(ok(routes_dto(&state.engine)))
}

/// Whether the log-on may change routes: only an application allowed every profile may.
pub(crate) fn admin(c: &NetworkLogon) -> Result<(), ApiError> {
    if c.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "application {} is limited to some profiles and may not change routes",
                c.app
            ),
        ))
    }
}

/// `PUT /v1/routes/{class}`.
pub(crate) async fn set_route(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(class): Path<String>,
    Body(req): Body<RouteRequest>,
) -> Response {
    if let Err(e) =
        admin(&c).and_then(|()| counted(&state, state.engine.set_route(&class, &req.application)))
    {
        return e.into_response();
    }
    state
        .remember_route(RouteChange {
            class,
            application: Some(req.application),
        })
        .await;
    reply(ok(routes_dto(&state.engine)))
}

/// `DELETE /v1/routes/{class}`.
pub(crate) async fn clear_route(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(class): Path<String>,
) -> Response {
    if let Err(e) = admin(&c) {
        return e.into_response();
    }
    if !state.engine.clear_route(&class) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for class {class:?}"),
        )
        .into_response();
    }
    state
        .remember_route(RouteChange {
            class,
            application: None,
        })
        .await;
    reply(ok(routes_dto(&state.engine)))
}

/// `PUT /v1/routes/default`.
pub(crate) async fn set_default_route(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Body(req): Body<DefaultRouteRequest>,
) -> Response {
    let d = match admin(&c).and_then(|()| Ok(req.default.parse::<DefaultRoute>()?)) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    state.engine.set_default_route(d.clone());
    if let Err(e) = state.store.default_route_changed(&d.to_string()).await {
        state.store_failed("a default route change", &e);
    }
    reply(ok(routes_dto(&state.engine)))
}

/// `POST /v1/translate`.
pub(crate) async fn translate(Authed(c): Authed, Body(req): Body<TranslateRequest>) -> Response {
    let options = TranslateOptions {
        cancel_call_waiting: req.cancel_call_waiting,
        force_local: req.force_local,
        force_long_distance: req.force_long_distance,
    };
    let r = c
        .session
        .translate_address(&req.address, options)
        .map_err(ApiError::from)
        .and_then(|t| ok(translated(t)));
    reply(r)
}

/// `GET /v1/snapshot`: the log-on's line opens and calls now, and the sequence number its
/// stream goes on after.
pub(crate) async fn snapshot(Authed(c): Authed) -> Response {
    // The sequence number first: every change after it is in an event after it.
    let seq = c.journal.last_seq();
    let calls = c
        .session
        .calls()
        .into_iter()
        .filter_map(|h| call_dto(&c.session, h).ok())
        .collect();
    let lines = c
        .session
        .line_opens()
        .into_iter()
        .map(|(h, l)| wire::LineOpen {
            line_handle: h.to_string(),
            line: l.0,
        })
        .collect();
    reply(ok(wire::Snapshot { seq, lines, calls }))
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let holding = Holding {
        engine: state.engine.stats(),
        logons: state.logons.len(),
        store_queue: state.store.queued(),
        cdr_queue: state.cdrs.as_ref().map_or(0, |c| c.recorder.queued()),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&holding),
    )
        .into_response()
}
