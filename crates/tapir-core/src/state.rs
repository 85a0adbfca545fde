//! Call states, their modes, and the transition table.
//!
//! A call is always in exactly one of sixteen states ([`CallState`]); several carry a mode that says more
//! (why it disconnected, what kind of busy). [`CallStateKind`] is the same set without modes, for tables.
//! [`transition_allowed`] is the one table of which state may follow which; providers may skip states
//! (a modem has no ringback), so the table lists every edge a real switch can take, not one fixed path.

use std::fmt;

/// The sixteen call states, without their modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallStateKind {
    /// No activity. Terminal: nothing follows it.
    Idle,
    /// A new call presented to the line, possibly ringing.
    Offering,
    /// The owner claimed the offered call; it alerts.
    Accepted,
    /// The switch is ready for digits.
    DialTone,
    /// Digits are going to the switch.
    Dialing,
    /// The far end is alerting.
    Ringback,
    /// Busy tone.
    Busy,
    /// A special information tone or announcement.
    SpecialInfo,
    /// The call is established.
    Connected,
    /// Dialing is complete; the switch is routing the call.
    Proceeding,
    /// Held.
    OnHold,
    /// A party of a conference.
    Conferenced,
    /// A conference held while a party is being added.
    OnHoldPendingConference,
    /// Held while a consultation call for a transfer is set up.
    OnHoldPendingTransfer,
    /// The far end or the network cleared the call; the owner should drop it.
    Disconnected,
    /// The provider cannot say.
    Unknown,
}

impl CallStateKind {
    /// Every state, in declaration order.
    pub const ALL: [CallStateKind; 16] = [
        Self::Idle,
        Self::Offering,
        Self::Accepted,
        Self::DialTone,
        Self::Dialing,
        Self::Ringback,
        Self::Busy,
        Self::SpecialInfo,
        Self::Connected,
        Self::Proceeding,
        Self::OnHold,
        Self::Conferenced,
        Self::OnHoldPendingConference,
        Self::OnHoldPendingTransfer,
        Self::Disconnected,
        Self::Unknown,
    ];

    /// A state with its default mode, for tables and tests.
    pub const fn with_default_mode(self) -> CallState {
        match self {
            Self::Idle => CallState::Idle,
            Self::Offering => CallState::Offering(OfferingMode::Active),
            Self::Accepted => CallState::Accepted,
            Self::DialTone => CallState::DialTone(DialToneMode::Normal),
            Self::Dialing => CallState::Dialing,
            Self::Ringback => CallState::Ringback,
            Self::Busy => CallState::Busy(BusyMode::Station),
            Self::SpecialInfo => CallState::SpecialInfo(SpecialInfoMode::Unknown),
            Self::Connected => CallState::Connected(ConnectedMode::Active),
            Self::Proceeding => CallState::Proceeding,
            Self::OnHold => CallState::OnHold,
            Self::Conferenced => CallState::Conferenced,
            Self::OnHoldPendingConference => CallState::OnHoldPendingConference,
            Self::OnHoldPendingTransfer => CallState::OnHoldPendingTransfer,
            Self::Disconnected => CallState::Disconnected(DisconnectReason::Normal),
            Self::Unknown => CallState::Unknown,
        }
    }

    /// Whether the call is held in any way (hard hold or pending transfer/conference).
    pub const fn is_held(self) -> bool {
        matches!(
            self,
            Self::OnHold | Self::OnHoldPendingConference | Self::OnHoldPendingTransfer
        )
    }
}

/// A call state with its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallState {
    /// No activity; terminal.
    Idle,
    /// Presented to the line.
    Offering(OfferingMode),
    /// Claimed by the owner, alerting.
    Accepted,
    /// Ready for digits.
    DialTone(DialToneMode),
    /// Digits going out.
    Dialing,
    /// Far end alerting.
    Ringback,
    /// Busy tone.
    Busy(BusyMode),
    /// Special information tone.
    SpecialInfo(SpecialInfoMode),
    /// Established.
    Connected(ConnectedMode),
    /// Routing.
    Proceeding,
    /// Held.
    OnHold,
    /// Party of a conference.
    Conferenced,
    /// Conference held while a party is added.
    OnHoldPendingConference,
    /// Held for a consultation transfer.
    OnHoldPendingTransfer,
    /// Cleared by the far end or the network, with the reason.
    Disconnected(DisconnectReason),
    /// Unknown.
    Unknown,
}

impl CallState {
    /// The state without its mode.
    pub const fn kind(self) -> CallStateKind {
        match self {
            Self::Idle => CallStateKind::Idle,
            Self::Offering(_) => CallStateKind::Offering,
            Self::Accepted => CallStateKind::Accepted,
            Self::DialTone(_) => CallStateKind::DialTone,
            Self::Dialing => CallStateKind::Dialing,
            Self::Ringback => CallStateKind::Ringback,
            Self::Busy(_) => CallStateKind::Busy,
            Self::SpecialInfo(_) => CallStateKind::SpecialInfo,
            Self::Connected(_) => CallStateKind::Connected,
            Self::Proceeding => CallStateKind::Proceeding,
            Self::OnHold => CallStateKind::OnHold,
            Self::Conferenced => CallStateKind::Conferenced,
            Self::OnHoldPendingConference => CallStateKind::OnHoldPendingConference,
            Self::OnHoldPendingTransfer => CallStateKind::OnHoldPendingTransfer,
            Self::Disconnected(_) => CallStateKind::Disconnected,
            Self::Unknown => CallStateKind::Unknown,
        }
    }

    /// Whether the call has ended for good.
    pub const fn is_idle(self) -> bool {
        matches!(self, Self::Idle)
    }
}

impl fmt::Display for CallState {
    /// `connected (active)`, `ringback`: the wire names, for people and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode_name() {
            Some(mode) => write!(f, "{} ({mode})", self.kind().name()),
            None => f.write_str(self.kind().name()),
        }
    }
}

/// How an offered call is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OfferingMode {
    /// Alerting at this station.
    Active,
    /// Offered but not alerting here (e.g. a bridged appearance).
    Inactive,
}

/// What kind of dial tone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DialToneMode {
    /// Normal dial tone.
    Normal,
    /// A special dial tone (e.g. message waiting).
    Special,
    /// Internal (PBX) dial tone.
    Internal,
    /// External (public network) dial tone.
    External,
    /// The provider cannot tell.
    Unknown,
    /// The provider does not report it.
    Unavailable,
}

/// What kind of busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BusyMode {
    /// The called station is busy.
    Station,
    /// No trunk was free.
    Trunk,
    /// The provider cannot tell.
    Unknown,
    /// The provider does not report it.
    Unavailable,
}

/// What a special information tone said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialInfoMode {
    /// No circuit.
    NoCircuit,
    /// Customer irregularity (e.g. a vacant number).
    CustomerIrregularity,
    /// Reorder (all circuits busy).
    Reorder,
    /// The provider cannot tell.
    Unknown,
    /// The provider does not report it.
    Unavailable,
}

/// How a connected call is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectedMode {
    /// Active at this station.
    Active,
    /// Live at another station of a bridged appearance.
    Inactive,
    /// Active, and held at another station.
    ActiveHeld,
    /// Inactive, and held at another station.
    InactiveHeld,
    /// Connection confirmed by the far end.
    Confirmed,
}

/// Why a call disconnected (TAPI's `LINEDISCONNECTMODE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The far end hung up normally.
    Normal,
    /// Unknown.
    Unknown,
    /// The far end rejected the call.
    Reject,
    /// The call was picked up elsewhere.
    PickedUp,
    /// The call was forwarded.
    Forwarded,
    /// The far end was busy.
    Busy,
    /// The far end did not answer.
    NoAnswer,
    /// The destination address was invalid.
    BadAddress,
    /// The destination could not be reached.
    Unreachable,
    /// The network was congested.
    Congestion,
    /// The far end's equipment is incompatible.
    Incompatible,
    /// The reason is not available.
    Unavailable,
    /// There was no dial tone.
    NoDialTone,
    /// The number has changed.
    NumberChanged,
    /// The destination is out of order.
    OutOfOrder,
    /// A temporary failure.
    TemporaryFailure,
    /// The requested quality of service is not available.
    QosUnavailable,
    /// The call was blocked.
    Blocked,
    /// The destination is in do-not-disturb.
    DoNotDisturb,
    /// The call was cancelled.
    Cancelled,
}

/// Whether a provider may report `to` for a call now in `from`.
///
/// The rules, in words:
/// - nothing follows `Idle`; everything may end in `Idle` (a drop, a redirect, a completed transfer);
/// - `Disconnected` may follow any live state and is followed only by `Idle`;
/// - `Unknown` may follow and precede any live state (weak call progress);
/// - a state may repeat only where the mode can change (connected ↔ connected-inactive, a new dial tone);
/// - otherwise the edges are those of a real switch: setup (dial tone → dialing → proceeding → ringback →
///   connected, with any step skipped), alerting (offering → accepted → connected), and the supplementary
///   states around `Connected` (hold, pending transfer/conference, conferenced).
pub fn transition_allowed(from: CallStateKind, to: CallStateKind) -> bool {
    use CallStateKind::*;
    match (from, to) {
        (Idle, _) => false,
        (_, Idle) => true,
        (Disconnected, _) => false,
        (_, Disconnected) | (_, Unknown) => from != Unknown || to != Unknown,
        (Unknown, _) => true,
        (Offering, to) => matches!(to, Accepted | Connected),
        (Accepted, to) => matches!(to, Connected),
        (DialTone, to) => matches!(
            to,
            DialTone | Dialing | Proceeding | Ringback | Busy | SpecialInfo | Connected
        ),
        (Dialing, to) => matches!(
            to,
            Dialing | DialTone | Proceeding | Ringback | Busy | SpecialInfo | Connected
        ),
        (Proceeding, to) => matches!(
            to,
            Ringback | Busy | SpecialInfo | Connected | OnHold | Conferenced
        ),
        (Ringback, to) => matches!(to, Connected | Busy | OnHold | Conferenced),
        (Busy, to) => matches!(to, Conferenced),
        (SpecialInfo, _) => false,
        (Connected, to) => matches!(
            to,
            Connected
                | OnHold
                | OnHoldPendingTransfer
                | OnHoldPendingConference
                | Conferenced
                | Dialing
        ),
        (OnHold, to) => matches!(to, Connected | Conferenced | OnHoldPendingTransfer),
        (OnHoldPendingTransfer, to) => matches!(to, Connected | Conferenced | OnHold),
        (OnHoldPendingConference, to) => matches!(to, Connected | OnHold),
        (Conferenced, to) => matches!(to, Connected | OnHold),
    }
}

/// Whether a provider may report a new call whose first state is `state`.
///
/// Any live state may be first (a call that existed before the provider started, a hot line that goes
/// straight to connected); a call cannot be born idle.
pub fn initial_state_allowed(state: CallStateKind) -> bool {
    state != CallStateKind::Idle
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallStateKind::*;

    #[test]
    fn idle_is_terminal_and_always_reachable() {
        for s in CallStateKind::ALL {
            assert!(!transition_allowed(Idle, s), "idle -> {s:?}");
            if s != Idle {
                assert!(transition_allowed(s, Idle), "{s:?} -> idle");
            }
        }
    }

    #[test]
    fn disconnected_only_leads_to_idle() {
        for s in CallStateKind::ALL {
            assert_eq!(transition_allowed(Disconnected, s), s == Idle, "{s:?}");
        }
    }

    #[test]
    fn every_live_state_can_disconnect() {
        for s in CallStateKind::ALL {
            if s != Idle && s != Disconnected {
                assert!(transition_allowed(s, Disconnected), "{s:?}");
            }
        }
    }

    #[test]
    fn typical_outgoing_and_incoming_paths_are_allowed() {
        let outgoing = [
            DialTone,
            Dialing,
            Proceeding,
            Ringback,
            Connected,
            Disconnected,
            Idle,
        ];
        let incoming = [Offering, Accepted, Connected, OnHold, Connected, Idle];
        for path in [&outgoing[..], &incoming[..]] {
            for w in path.windows(2) {
                assert!(transition_allowed(w[0], w[1]), "{:?} -> {:?}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn impossible_edges_are_refused() {
        assert!(!transition_allowed(Connected, Offering));
        assert!(!transition_allowed(Ringback, DialTone));
        assert!(!transition_allowed(Offering, Ringback));
        assert!(!transition_allowed(Unknown, Unknown));
        assert!(!initial_state_allowed(Idle));
        assert!(initial_state_allowed(Connected));
    }

    #[test]
    fn default_modes_round_trip() {
        for s in CallStateKind::ALL {
            assert_eq!(s.with_default_mode().kind(), s);
        }
    }
}

wire_names!(CallStateKind {
    Idle = "idle",
    Offering = "offering",
    Accepted = "accepted",
    DialTone = "dial_tone",
    Dialing = "dialing",
    Ringback = "ringback",
    Busy = "busy",
    SpecialInfo = "special_info",
    Connected = "connected",
    Proceeding = "proceeding",
    OnHold = "on_hold",
    Conferenced = "conferenced",
    OnHoldPendingConference = "on_hold_pending_conference",
    OnHoldPendingTransfer = "on_hold_pending_transfer",
    Disconnected = "disconnected",
    Unknown = "unknown",
});

wire_names!(OfferingMode {
    Active = "active",
    Inactive = "inactive",
});

wire_names!(DialToneMode {
    Normal = "normal",
    Special = "special",
    Internal = "internal",
    External = "external",
    Unknown = "unknown",
    Unavailable = "unavailable",
});

wire_names!(BusyMode {
    Station = "station",
    Trunk = "trunk",
    Unknown = "unknown",
    Unavailable = "unavailable",
});

wire_names!(SpecialInfoMode {
    NoCircuit = "no_circuit",
    CustomerIrregularity = "customer_irregularity",
    Reorder = "reorder",
    Unknown = "unknown",
    Unavailable = "unavailable",
});

wire_names!(ConnectedMode {
    Active = "active",
    Inactive = "inactive",
    ActiveHeld = "active_held",
    InactiveHeld = "inactive_held",
    Confirmed = "confirmed",
});

wire_names!(DisconnectReason {
    Normal = "normal",
    Unknown = "unknown",
    Reject = "reject",
    PickedUp = "picked_up",
    Forwarded = "forwarded",
    Busy = "busy",
    NoAnswer = "no_answer",
    BadAddress = "bad_address",
    Unreachable = "unreachable",
    Congestion = "congestion",
    Incompatible = "incompatible",
    Unavailable = "unavailable",
    NoDialTone = "no_dial_tone",
    NumberChanged = "number_changed",
    OutOfOrder = "out_of_order",
    TemporaryFailure = "temporary_failure",
    QosUnavailable = "qos_unavailable",
    Blocked = "blocked",
    DoNotDisturb = "do_not_disturb",
    Cancelled = "cancelled",
});

impl CallState {
    /// The wire name of the state's mode (its disconnect cause, for `Disconnected`), if it has one.
    pub const fn mode_name(self) -> Option<&'static str> {
        match self {
            Self::Offering(m) => Some(m.name()),
            Self::DialTone(m) => Some(m.name()),
            Self::Busy(m) => Some(m.name()),
            Self::SpecialInfo(m) => Some(m.name()),
            Self::Connected(m) => Some(m.name()),
            Self::Disconnected(r) => Some(r.name()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod wire_names_tests {
    use super::*;

    /// The words of the wire, pinned: a renamed variant must not change them.
    #[test]
    fn state_and_mode_names_are_pinned() {
        assert_eq!(CallStateKind::NAMES.len(), CallStateKind::ALL.len());
        for (k, n) in CallStateKind::ALL.iter().zip(CallStateKind::NAMES) {
            assert_eq!(k.name(), *n);
        }
        assert_eq!(
            CallStateKind::NAMES.join(" "),
            "idle offering accepted dial_tone dialing ringback busy special_info connected \
             proceeding on_hold conferenced on_hold_pending_conference on_hold_pending_transfer \
             disconnected unknown"
        );
        assert_eq!(
            DisconnectReason::NAMES.join(" "),
            "normal unknown reject picked_up forwarded busy no_answer bad_address unreachable \
             congestion incompatible unavailable no_dial_tone number_changed out_of_order \
             temporary_failure qos_unavailable blocked do_not_disturb cancelled"
        );
        assert_eq!(
            ConnectedMode::NAMES,
            [
                "active",
                "inactive",
                "active_held",
                "inactive_held",
                "confirmed"
            ]
        );
        assert_eq!(
            CallState::Disconnected(DisconnectReason::DoNotDisturb).mode_name(),
            Some("do_not_disturb")
        );
        assert_eq!(CallState::Ringback.mode_name(), None);
    }
}
