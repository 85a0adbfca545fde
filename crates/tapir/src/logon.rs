//! Sessions beginning and ending: a log-on counted against the session limits and its providers
//! asked, its lines worked out; a log-off dropping the calls the session solely owns and closing its
//! lines.

use std::sync::{Arc, Mutex};

use tapir_core::{Error, ProviderId};
use tracing::{debug, info, warn};

use crate::call::CallIndex;
use crate::inbox::Inbox;
use crate::inner::{Inner, Providers, ServiceSlot};
use crate::line::LineSlot;
use crate::profile::DisabledService;
use crate::session_state::SessionState;
use crate::status::ServiceState;
use crate::sync::{FastDashMap, lock};

impl Inner {
    /// Establishes a session on `profile_name`: counts it against the session limits, asks the
    /// providers, works out its lines. Leaves nothing behind when it fails.
    pub(crate) async fn open_session(
        &self,
        app: &str,
        profile_name: &str,
        shared: bool,
        providers: &Providers,
    ) -> Result<Arc<SessionState>, Error> {
        let profile = self
            .profiles
            .get(profile_name)
            .ok_or_else(|| Error::UnknownProfile {
                name: profile_name.to_owned(),
            })?;
        let services: Vec<&ServiceSlot> = profile
            .services
            .iter()
            .filter_map(|name| self.services.iter().find(|s| &s.name == name))
            .collect();
        let mut reserved: Vec<ProviderId> = services
            .iter()
            .flat_map(|s| s.providers.iter().copied())
            .collect();
        self.reserve(app, &reserved, providers)?;
        let mut disabled = Vec::new();
        for service in &services {
            if let Some(reason) = self.ask_providers(app, service, providers).await {
                warn!(app, service = service.name, %reason, "service disabled for the session");
                disabled.push(DisabledService {
                    service: service.name.clone(),
                    reason,
                });
            }
        }
        let usable: Vec<ProviderId> = services
            .iter()
            .filter(|s| !disabled.iter().any(|d| d.service == s.name))
            .flat_map(|s| s.providers.iter().copied())
            .collect();
        let unused: Vec<ProviderId> = reserved
            .iter()
            .copied()
            .filter(|id| !usable.contains(id))
            .collect();
        self.unreserve(&unused);
        reserved.retain(|id| usable.contains(id));
        // (An engine without providers has a default profile without services; that is not a
        // failure.)
        if usable.is_empty() && !services.is_empty() {
            let reason = disabled
                .iter()
                .map(|d| format!("{}: {}", d.service, d.reason))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::NoServiceAvailable { reason });
        }
        let allowed = self
            .lines()
            .iter()
            .map(|l| usable.contains(&l.provider) && profile.allows(&l.caps))
            .collect();
        let session = Arc::new(SessionState {
            inbox: Arc::new(Inbox::new(app, shared, self.queue_capacity)),
            profile: profile_name.to_owned(),
            providers: reserved,
            allowed,
            disabled,
            lines: FastDashMap::default(),
            calls: CallIndex::default(),
            location: Mutex::new(profile.location.clone()),
        });
        let id = session.inbox.id;
        self.sessions.insert(id, session.clone());
        debug!(session = %id, app, profile = profile_name, shared, "session established");
        Ok(session)
    }

    /// Counts one more session against every limit of `reserved`'s providers at once, or against
    /// none (`SessionLimit` naming the first that is full).
    fn reserve(
        &self,
        app: &str,
        reserved: &[ProviderId],
        providers: &Providers,
    ) -> Result<(), Error> {
        let mut usage = lock(&self.usage);
        for &id in reserved {
            let p = self.provider(id);
            let limits = [
                providers[id.0 as usize].session_limit(),
                self.services[p.service].max_sessions,
            ];
            if let Some(limit) = limits.into_iter().flatten().min()
                && usage[id.0 as usize] >= limit
            {
                info!(app, provider = %p.name, limit, "log-on refused: session limit");
                return Err(Error::SessionLimit {
                    provider: id,
                    name: p.name.clone(),
                    limit,
                });
            }
        }
        for &id in reserved {
            usage[id.0 as usize] += 1;
        }
        Ok(())
    }

    /// Counts a session out of `providers`' limits again.
    fn unreserve(&self, providers: &[ProviderId]) {
        let mut usage = lock(&self.usage);
        for p in providers {
            if let Some(n) = usage.get_mut(p.0 as usize) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Asks each provider of `service` whether it can serve one more session (once more if it says
    /// no). The reason the service is disabled for the session, if it is.
    async fn ask_providers(
        &self,
        app: &str,
        service: &ServiceSlot,
        providers: &Providers,
    ) -> Option<String> {
        for &id in &service.providers {
            let p = self.provider(id);
            let st = {
                let st = lock(&p.status);
                (st.state, st.reason.clone())
            };
            if let (ServiceState::Disabled, reason) = st {
                return Some(reason.unwrap_or_else(|| format!("{} is disabled", p.name)));
            }
            let provider = &providers[id.0 as usize];
            let mut answer = provider.session_logon().await;
            if let Err(e) = &answer {
                debug!(app, provider = %p.name, error = %e, "provider refused the session; asking once more");
                answer = provider.session_logon().await;
            }
            if let Err(e) = answer {
                lock(&p.status).last_error = Some(e.to_string());
                return Some(format!("{} could not serve the session: {e}", p.name));
            }
        }
        None
    }

    /// Ends a session: no more events, every call handle released (solely owned calls dropped),
    /// every line closed.
    pub(crate) async fn end_session(&self, session: &Arc<SessionState>) {
        {
            let mut q = lock(&session.inbox.queue);
            if q.ended {
                return;
            }
            q.end();
        }
        self.release_session(session).await;
    }

    /// Releases what an ended session holds.
    pub(crate) async fn release_session(&self, session: &Arc<SessionState>) {
        let id = session.inbox.id;
        self.sessions.remove(&id);
        self.unreserve(&session.providers);
        if session.inbox.shared {
            let mut shared = self.shared.lock().await;
            if shared.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
                *shared = None;
            }
        }
        for (handle, entry) in session.calls.entries() {
            self.release_dropping(&entry, session, handle).await;
        }
        let lines: Vec<(crate::handles::LineHandle, Arc<LineSlot>)> = session
            .lines
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (handle, line) in lines {
            session.lines.remove(&handle);
            self.remove_opener(&line, handle).await;
        }
        // Pending requests of this session are cleaned up by the requests themselves when their
        // provider answers.
        debug!(session = %id, app = session.inbox.app, "logged off");
    }

    /// Removes one opener of a line; tells the provider when the last one goes.
    pub(crate) async fn remove_opener(
        &self,
        line: &Arc<LineSlot>,
        handle: crate::handles::LineHandle,
    ) {
        let Some(opens) = self.opens(line) else {
            return;
        };
        let mut provider_open = opens.provider_open.lock().await;
        let now_unused = {
            let mut openers = lock(&opens.openers);
            openers.retain(|o| o.handle != handle);
            openers.is_empty()
        };
        if now_unused && *provider_open {
            if let Some(provider) = self.provider(line.provider).provider.upgrade()
                && let Err(e) = provider.close_line(line.local).await
            {
                debug!(line = %line.id, error = %e, "provider close_line failed");
            }
            *provider_open = false;
        }
    }
}
