//! What the service keeps while it runs: the engine, the applications that may log on, the live
//! network log-ons with their tokens and journals, the store, the metrics.

use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use tapir::core::route::DefaultRoute;
use tapir::{Engine, Session};
use tapir_config::{ApplicationSettings, Config};

use crate::idempotency::Replies;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::store::{RouteChange, Store, StoreError};

/// The service's state, shared by every request.
pub struct AppState {
    pub(crate) engine: Engine,
    pub(crate) applications: std::collections::BTreeMap<String, ApplicationSettings>,
    /// Events a log-on's journal keeps in memory.
    pub(crate) journal_events: usize,
    /// The live log-ons, by token.
    pub(crate) logons: DashMap<String, Arc<NetworkLogon>>,
    pub(crate) metrics: Metrics,
    pub(crate) store: Store,
    pub(crate) cdrs: Option<crate::Cdrs>,
}

/// One application's log-on over the network: its session, its token, its journal, and the replies
/// it may be asked for again.
pub struct NetworkLogon {
    pub(crate) token: String,
    pub(crate) app: String,
    pub(crate) session: Session,
    pub(crate) journal: Arc<Journal>,
    /// The replies to its requests that carried a request ID.
    pub(crate) replies: Replies,
    /// Whether it may use every profile (and so change routes and read every line's records).
    pub(crate) admin: bool,
    /// The log-on's ID in the store.
    pub(crate) stored: i64,
    /// The task writing the session's events to the journal and the store.
    pub(crate) pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl AppState {
    /// The service's state for a running engine, its configuration, its store and (unless switched off)
    /// its call records; without them `GET /v1/cdrs` answers 404 `cdrs_disabled`.
    pub fn new(
        engine: Engine,
        config: &Config,
        store: Store,
        cdrs: Option<crate::Cdrs>,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            applications: config.applications.clone(),
            journal_events: config.server.journal_events,
            logons: DashMap::new(),
            metrics: Metrics::new(cdrs.as_ref().map(|c| c.recorder.clone())),
            store,
            cdrs,
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Applies the route changes made through the API in earlier runs, over the configured table.
    pub async fn restore_routes(&self) {
        let (changes, default) = match self.store.routes().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored route changes");
                return;
            }
        };
        for change in changes {
            let r = match &change.application {
                Some(app) => self.engine.set_route(&change.class, app),
                None => {
                    self.engine.clear_route(&change.class);
                    Ok(())
                }
            };
            if let Err(e) = r {
                tracing::warn!(class = change.class, error = %e, "a stored route change no longer applies");
            }
        }
        if let Some(d) = default {
            match d.parse::<DefaultRoute>() {
                Ok(d) => self.engine.set_default_route(d),
                Err(e) => {
                    tracing::warn!(default = d, error = %e, "the stored default route no longer applies")
                }
            }
        }
    }

    /// Records a route change so that it survives a restart (the running table has it already).
    pub(crate) async fn remember_route(&self, change: RouteChange) {
        if let Err(e) = self.store.route_changed(change).await {
            self.store_failed("a route change", &e);
        }
    }

    /// Counts and logs a write the store could not make.
    pub(crate) fn store_failed(&self, what: &str, e: &StoreError) {
        self.metrics.store_error();
        tracing::error!(error = %e, "the store could not record {what}");
    }

    /// Logs every log-on off (each session told by its stream ending), and writes what the store
    /// has queued.
    pub async fn logoff_all(&self) {
        let logons: Vec<Arc<NetworkLogon>> =
            self.logons.iter().map(|c| c.value().clone()).collect();
        self.logons.clear();
        for c in logons {
            self.finish(&c, "shutdown").await;
        }
        self.store.flush().await;
    }

    /// Ends a log-on: the session logged off, its last events journaled, the store told.
    pub(crate) async fn finish(&self, c: &NetworkLogon, reason: &'static str) {
        c.session.clone().logoff().await;
        let pump = c.pump.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(p) = pump {
            let _ = p.await;
        }
        if let Err(e) = self.store.ended(c.stored, reason).await {
            self.store_failed("the end of a log-on", &e);
        }
    }
}
