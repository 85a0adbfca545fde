//! The status table: one row for the engine and one per provider, readable at any time
//! ([`Engine::status`](crate::Engine::status), [`Session::status`](crate::Session::status)); every
//! change of a provider's row is also delivered to every session as [`Event::Status`](crate::Event::Status).

use std::collections::BTreeMap;

use tapir_core::gate::AddressUsage;
use tapir_core::{AddressId, LineId};

/// The state of a service (a provider) or of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// Being started.
    Starting,
    /// Usable (some lines may be out of service; see [`StatusRow::last_error`]).
    Available,
    /// Failed to start twice and was left out; it has no lines. The reason says why.
    Disabled,
    /// Started, but failed since: it reported that it lost its switch, or every line of it is out
    /// of service (a modem unplugged). It may come back.
    Failed,
    /// Stopped (the engine shut down).
    Stopped,
}

impl ServiceState {
    /// Every state's wire name, in declaration order.
    pub const NAMES: &'static [&'static str] =
        &["starting", "available", "disabled", "failed", "stopped"];

    /// The wire name: `starting`, `available`, `disabled`, `failed`, `stopped`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Available => "available",
            Self::Disabled => "disabled",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// One row of the status table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRow {
    /// `"engine"`, or the provider's name.
    pub id: String,
    /// The service the provider belongs to (`"engine"` for the engine's row).
    pub service: String,
    /// A name for people.
    pub display_name: String,
    /// The state.
    pub state: ServiceState,
    /// Why it is disabled or failed.
    pub reason: Option<String>,
    /// Lines it provides.
    pub lines: usize,
    /// Lines of it that are out of service now.
    pub lines_out_of_service: usize,
    /// Sessions using it: with a line of it open (for the engine row: all sessions).
    pub sessions: usize,
    /// The last error it reported, or the last fault (kept after it recovers).
    pub last_error: Option<String>,
    /// Operations it panicked in or did not finish within the engine's deadline, since the engine
    /// started.
    pub faults: u64,
    /// Reports of its the engine refused (a call it never announced, a state change the transition
    /// table forbids, a line it does not have, text too long …), since the engine started.
    pub refused_reports: u64,
}

/// A line's status as one session sees it ([`Session::line_status`](crate::Session::line_status)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineStatus {
    /// The line.
    pub line: LineId,
    /// Whether calls can be made and received on it now: its provider is available and the line is
    /// in service.
    pub in_service: bool,
    /// Why it is not, when it is not.
    pub reason: Option<String>,
    /// The devices it reaches, as its provider reports them (registered phones; none for a provider
    /// without devices of its own).
    pub devices: Vec<tapir_provider::LineDevice>,
    /// Opens of the line, by every session.
    pub opens: usize,
    /// Each address's calls.
    pub addresses: Vec<AddressStatus>,
}

/// An address's calls, counted as the gate counts them for its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressStatus {
    /// The address (its index on the line).
    pub address: AddressId,
    /// Its number.
    pub number: String,
    /// Live calls by class: active, on hold, pending transfer, pending conference.
    pub usage: AddressUsage,
}

/// Why the engine refused a provider's report. A refused report is logged, counted in the
/// provider's row, never applied and never delivered to an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A call on a line the provider does not have.
    UnknownLine,
    /// A new call on an address the line does not have, or in a state no call starts in.
    BadNewCall,
    /// A new call for a leg already announced.
    NewCallTwice,
    /// A report for a call never announced, or already gone idle and forgotten.
    UnknownCall,
    /// A report for a call after it went idle.
    AfterIdle,
    /// A state change the transition table does not allow.
    Transition,
    /// Call information with a party's number or name longer than the engine keeps.
    Oversized,
    /// A digit that is not a DTMF digit.
    BadDigit,
    /// A new call while the provider has reported itself failed.
    WhileFailed,
    /// A call created for a request that has already ended (failed or timed out): the provider is
    /// told to drop it.
    EndedRequest,
}

impl Refusal {
    /// What was wrong, for the log.
    pub(crate) const fn text(self) -> &'static str {
        match self {
            Self::UnknownLine => "a report for a line the provider does not have",
            Self::BadNewCall => "a new call with a bad address or first state",
            Self::NewCallTwice => "a new call reported twice",
            Self::UnknownCall => "a report for a call the engine does not track",
            Self::AfterIdle => "a report for a call after it went idle",
            Self::Transition => "a state change the transition table does not allow",
            Self::Oversized => "call information with text too long",
            Self::BadDigit => "a digit that is not a DTMF digit",
            Self::WhileFailed => "a new call while the provider has failed",
            Self::EndedRequest => "a call for a request that has ended",
        }
    }
}

/// What the engine keeps per provider to make its row.
#[derive(Debug)]
pub(crate) struct ProviderStatus {
    pub(crate) state: ServiceState,
    pub(crate) reason: Option<String>,
    pub(crate) lines: usize,
    pub(crate) out_of_service: BTreeMap<LineId, String>,
    /// Why the provider has failed as a whole, from its report until it says it is restored.
    pub(crate) down: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) faults: u64,
    pub(crate) refused_reports: u64,
}

impl ProviderStatus {
    pub(crate) fn starting() -> Self {
        Self {
            state: ServiceState::Starting,
            reason: None,
            lines: 0,
            out_of_service: BTreeMap::new(),
            down: None,
            last_error: None,
            faults: 0,
            refused_reports: 0,
        }
    }

    /// The provider started with `lines` lines.
    pub(crate) fn started(&mut self, lines: usize) {
        self.lines = lines;
        self.state = ServiceState::Available;
        // Lines may have gone out of service, or the provider down, while it started.
        self.settle();
    }

    /// A line went out of service (`Some(reason)`) or came back (`None`). Returns whether the row
    /// changed.
    pub(crate) fn line(&mut self, line: LineId, out: Option<String>) -> bool {
        let before = (self.state, self.reason.clone(), self.out_of_service.len());
        match out {
            Some(reason) => {
                self.last_error = Some(reason.clone());
                self.out_of_service.insert(line, reason);
            }
            None => {
                self.out_of_service.remove(&line);
            }
        }
        self.settle();
        before != (self.state, self.reason.clone(), self.out_of_service.len())
    }

    /// The provider reported that it failed (`Some(reason)`) or that it is restored (`None`).
    /// Returns whether it changed anything.
    pub(crate) fn set_down(&mut self, down: Option<String>) -> bool {
        if self.down == down {
            return false;
        }
        if let Some(reason) = &down {
            self.last_error = Some(reason.clone());
        }
        self.down = down;
        self.settle();
        true
    }

    /// The state of a started provider, from its own failure and its lines'.
    fn settle(&mut self) {
        if !matches!(self.state, ServiceState::Available | ServiceState::Failed) {
            return;
        }
        if let Some(reason) = &self.down {
            self.state = ServiceState::Failed;
            self.reason = Some(reason.clone());
        } else if self.lines > 0 && self.out_of_service.len() == self.lines {
            self.state = ServiceState::Failed;
            self.reason = self.out_of_service.values().next_back().cloned();
        } else {
            self.state = ServiceState::Available;
            self.reason = None;
        }
    }

    /// Why a line of this provider cannot be used now, if it cannot.
    pub(crate) fn line_unusable(&self, line: LineId) -> Option<String> {
        match self.state {
            ServiceState::Available | ServiceState::Failed => self
                .down
                .clone()
                .or_else(|| self.out_of_service.get(&line).cloned()),
            state => Some(
                self.reason
                    .clone()
                    .unwrap_or_else(|| state.name().to_owned()),
            ),
        }
    }

    pub(crate) fn row(&self, id: &str, sessions: usize) -> StatusRow {
        StatusRow {
            id: id.to_owned(),
            service: id.to_owned(),
            display_name: id.to_owned(),
            state: self.state,
            reason: self.reason.clone(),
            lines: self.lines,
            lines_out_of_service: if self.down.is_some() {
                self.lines
            } else {
                self.out_of_service.len()
            },
            sessions,
            last_error: self.last_error.clone(),
            faults: self.faults,
            refused_reports: self.refused_reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceState as S;
    use super::*;

    #[test]
    fn a_provider_that_fails_is_failed_until_restored_whatever_its_lines_say() {
        let mut st = ProviderStatus::starting();
        st.started(2);
        assert!(st.line(LineId(0), Some("unplugged".into())));
        assert_eq!(
            (st.state, st.line_unusable(LineId(1))),
            (S::Available, None)
        );

        assert!(st.set_down(Some("link down".into())));
        assert!(
            !st.set_down(Some("link down".into())),
            "a repeat changes nothing"
        );
        assert_eq!(st.state, S::Failed);
        for line in [LineId(0), LineId(1)] {
            assert_eq!(st.line_unusable(line).as_deref(), Some("link down"));
        }
        let row = st.row("pbx", 0);
        assert_eq!(
            (row.lines_out_of_service, row.reason.as_deref()),
            (2, Some("link down"))
        );
        // A line coming back while the provider is down does not bring the provider back.
        assert!(st.line(LineId(0), None));
        assert_eq!(st.state, S::Failed);

        assert!(st.set_down(None));
        assert_eq!((st.state, st.reason.as_deref()), (S::Available, None));
        assert_eq!(st.line_unusable(LineId(1)), None);
        assert_eq!(st.last_error.as_deref(), Some("link down"));
    }

    #[test]
    fn each_state_is_named_by_its_entry_in_the_table() {
        let all = [
            S::Starting,
            S::Available,
            S::Disabled,
            S::Failed,
            S::Stopped,
        ];
        let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
        assert_eq!(names, S::NAMES);
    }
}
