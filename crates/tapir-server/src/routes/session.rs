//! Log-on and log-off over the network, and what a log-on is.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tapir::Session;
use tapir::profile::LogonOptions;
use tapir_api as wire;
use tapir_api::{LogonRequest, LogonResponse};
use tracing::info;

use crate::error::ApiError;
use crate::extract::{Authed, Body};
use crate::journal::{self, Journal};
use crate::reply::{no_content, ok, reply};
use crate::state::{AppState, NetworkLogon};

pub(crate) async fn logon(
    State(state): State<Arc<AppState>>,
    Body(req): Body<LogonRequest>,
) -> Response {
    let app = match state.applications.get(&req.application) {
        Some(a) if a.secret == req.secret => a,
        _ => {
            info!(
                app = req.application,
                "network log-on refused: unknown application or wrong secret"
            );
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown application or wrong secret",
            )
            .into_response();
        }
    };
    if let Some(p) = &req.profile
        && !app.profiles.is_empty()
        && !app.profiles.contains(p)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("application {} may not use profile {p:?}", req.application),
        )
        .into_response();
    }
    let mut options = LogonOptions::new(req.application.clone());
    if let Some(p) = &req.profile {
        options = options.profile(p.clone());
    } else if let Some(first) = app.profiles.first() {
        options = options.profile(first.clone());
    }
    if req.shared {
        options = options.shared();
    }
    let session = match state.engine.logon_with(options).await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let stored = match state
        .store
        .logon(&token, &req.application, &session.id().to_string())
        .await
    {
        Ok(id) => id,
        Err(e) => {
            state.store_failed("a log-on", &e);
            session.logoff().await;
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the service cannot record the log-on; try again later",
            )
            .into_response();
        }
    };
    let journal = Arc::new(Journal::new(state.journal_events));
    let pump = journal::pump(
        session.clone(),
        journal.clone(),
        state.store.clone(),
        stored,
    );
    let logon = Arc::new(NetworkLogon {
        token: token.clone(),
        app: req.application.clone(),
        session: session.clone(),
        journal,
        replies: Default::default(),
        admin: app.profiles.is_empty(),
        stored,
        pump: Mutex::new(Some(pump)),
    });
    state.logons.insert(token.clone(), logon);
    info!(app = req.application, session = %session.id(), "network log-on");
    let body = LogonResponse {
        session_id: session.id().to_string(),
        token,
        application: req.application,
        profile: session.profile().to_owned(),
        shared: session.is_shared(),
        disabled_services: disabled(&session),
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

pub(crate) async fn session_info(Authed(c): Authed) -> Response {
    let s = &c.session;
    reply(ok(wire::SessionInfo {
        session_id: s.id().to_string(),
        application: c.app.clone(),
        profile: s.profile().to_owned(),
        shared: s.is_shared(),
        applications: s.applications(),
        disabled_services: disabled(s),
    }))
}

pub(crate) async fn logoff(State(state): State<Arc<AppState>>, Authed(c): Authed) -> Response {
    state.logons.remove(&c.token);
    state.finish(&c, "logoff").await;
    reply(no_content())
}

pub(crate) fn disabled(s: &Session) -> Vec<wire::DisabledService> {
    s.disabled_services()
        .iter()
        .map(|d| wire::DisabledService {
            service: d.service.clone(),
            reason: d.reason.clone(),
        })
        .collect()
}
