//! What the kit can find wrong with a provider, as values a provider author can match on.

use tapir_core::dial::DialStringError;
use tapir_core::state::{CallState, CallStateKind};
use tapir_core::{CallLegId, Error, LineId};

/// One of the kit's checks. [`run`](super::run) runs them all, in this order, each on a fresh
/// provider; [`run_scenario`](super::run_scenario) runs one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scenario {
    /// The capabilities the provider describes are well formed.
    Capabilities,
    /// Every operation it does not advertise is refused as unavailable and reports nothing.
    Unadvertised,
    /// A call from line 0 to the harness's answering number connects and drops.
    OutgoingCall,
    /// A call from outside is offered, accepted, answered, hung up by the far end; a second is
    /// rejected.
    IncomingCall,
    /// Hold and unhold; a held call cannot be held again.
    Hold,
    /// A connected call sent to line 1.
    BlindTransfer,
    /// An offered call sent to line 0.
    Redirect,
    /// A consultation call cancelled by unholding, then set up again and completed as a transfer.
    ConsultationTransfer,
    /// A conference set up from a call, a party added, removed, and the conference dropped.
    Conference,
    /// A call parked in a free orbit and retrieved on line 1.
    Park,
    /// A call ringing on the last line picked up from line 0.
    Pickup,
    /// The last line forwarded to line 0 and the forwarding cancelled.
    Forward,
    /// Two calls on one address swap between connected and held.
    SwapHold,
    /// A connected call secured.
    Secure,
    /// Digits one party sends reach the other party, which monitors them.
    Digits,
}

impl Scenario {
    /// Every scenario, in the order [`run`](super::run) runs them.
    pub const ALL: [Scenario; 15] = [
        Scenario::Capabilities,
        Scenario::Unadvertised,
        Scenario::OutgoingCall,
        Scenario::IncomingCall,
        Scenario::Hold,
        Scenario::BlindTransfer,
        Scenario::Redirect,
        Scenario::ConsultationTransfer,
        Scenario::Conference,
        Scenario::Park,
        Scenario::Pickup,
        Scenario::Forward,
        Scenario::SwapHold,
        Scenario::Secure,
        Scenario::Digits,
    ];

    /// How findings name the scenario.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Capabilities => "capabilities",
            Scenario::Unadvertised => "unadvertised operations",
            Scenario::OutgoingCall => "outgoing call",
            Scenario::IncomingCall => "incoming call",
            Scenario::Hold => "hold",
            Scenario::BlindTransfer => "blind transfer",
            Scenario::Redirect => "redirect",
            Scenario::ConsultationTransfer => "consultation transfer",
            Scenario::Conference => "conference",
            Scenario::Park => "park",
            Scenario::Pickup => "pickup",
            Scenario::Forward => "forward",
            Scenario::SwapHold => "swap hold",
            Scenario::Secure => "secure",
            Scenario::Digits => "digits",
        }
    }
}

/// Something a scenario found: where, and what.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {problem}", scenario.name())]
pub struct Finding {
    /// The scenario that found it.
    pub scenario: Scenario,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with the provider (or, for [`Problem::Harness`], with the test's harness).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// `Provider::start` failed.
    #[error("start failed: {0}")]
    StartFailed(Error),
    /// The provider describes no line at all.
    #[error("the provider describes no line")]
    NoLine,
    /// A line's capabilities contradict themselves.
    #[error("line {line} {flaw}")]
    Capabilities {
        /// The line's index.
        line: usize,
        /// The contradiction.
        flaw: CapsFlaw,
    },
    /// An operation the provider does not advertise was not refused as unavailable.
    #[error("{operation} is not advertised but answered {answer:?}")]
    UnadvertisedAnswered {
        /// The operation's wire name.
        operation: &'static str,
        /// What the provider answered.
        answer: Result<(), Error>,
    },
    /// Refusing an unadvertised operation reported events.
    #[error("refused operations reported events")]
    RefusedButReported,
    /// An advertised operation failed.
    #[error("{operation} failed: {error}")]
    Failed {
        /// What the kit asked for.
        operation: &'static str,
        /// The provider's answer.
        error: Error,
    },
    /// An operation that should have been refused was not, or was refused for the wrong reason.
    #[error("{operation} answered {answer:?}, expected {expected}")]
    WrongAnswer {
        /// What the kit asked for.
        operation: &'static str,
        /// The provider's answer.
        answer: Result<(), Error>,
        /// What the model says it must answer.
        expected: &'static str,
    },
    /// A call was not in the state the model gives at a point where the operation has completed.
    #[error("{when}: {leg} is {got:?}, expected {expected:?}")]
    WrongState {
        /// The call.
        leg: CallLegId,
        /// Where in the scenario.
        when: &'static str,
        /// Its state as reported (`None`: never reported).
        got: Option<CallStateKind>,
        /// The state it must be in.
        expected: CallStateKind,
    },
    /// A call did not reach a state within two minutes of the provider's clock.
    #[error("{what}: {leg} never reached {expected:?} (last {last:?})")]
    NeverReached {
        /// The call.
        leg: CallLegId,
        /// Which call of the scenario.
        what: &'static str,
        /// The state it was waiting for.
        expected: CallStateKind,
        /// Its last reported state.
        last: Option<CallState>,
    },
    /// A call an operation created was not reported with the request's ID before the operation
    /// returned (the engine could not give the application its handle).
    #[error("{what} {leg} was not reported with the request's ID")]
    NotReportedWithRequest {
        /// Which call.
        what: &'static str,
        /// The call.
        leg: CallLegId,
    },
    /// No new call was offered where the scenario expects one.
    #[error("{what}: no call was offered on {line}")]
    NotOffered {
        /// What should have offered it.
        what: &'static str,
        /// The line.
        line: LineId,
    },
    /// A call from outside was first reported in a state other than offering.
    #[error("a call from outside was first reported as {0:?}")]
    OfferedAs(CallState),
    /// A completed transfer created a conference.
    #[error("a transfer created a conference {0}")]
    TransferMadeConference(CallLegId),
    /// A party removed from a conference is neither idle nor back on its own.
    #[error("a removed party is {0:?}")]
    RemovedPartyIs(Option<CallStateKind>),
    /// A non-directed park named no orbit to retrieve the call from.
    #[error("a non-directed park returned no orbit")]
    NoOrbit,
    /// The provider parks only in orbits the caller names, which the kit cannot know.
    #[error("directed-only park needs an orbit the kit cannot know")]
    DirectedParkOnly,
    /// Securing a call reported no call information with `secure` set.
    #[error("secure call reported no secured call information")]
    NotSecured,
    /// The monitoring party saw other digits than the ones sent.
    #[error("the monitoring party saw digits {got:?}, not {sent:?}")]
    Digits {
        /// What the monitoring party was told.
        got: String,
        /// What the other party sent.
        sent: &'static str,
    },
    /// The events the provider reported broke the model.
    #[error("{0}")]
    Events(EventFlaw),
    /// A number the harness gave is not a dial string.
    #[error("{number:?} does not parse as a dial string: {error}")]
    BadNumber {
        /// The number.
        number: String,
        /// Why not.
        error: DialStringError,
    },
    /// The harness could not do what the scenario asked of it.
    #[error("the harness could not {what}: {error}")]
    Harness {
        /// What it was asked.
        what: &'static str,
        /// Its error.
        error: Error,
    },
}

/// A contradiction in one line's capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapsFlaw {
    /// No address.
    #[error("has no address")]
    NoAddress,
    /// No media mode.
    #[error("supports no media mode")]
    NoMediaMode,
    /// Makes calls with no active-call slot.
    #[error("can make calls but has no active-call slot")]
    MakeCallWithoutSlot,
    /// Holds with no hold slot.
    #[error("advertises hold with no hold slot")]
    HoldWithoutSlot,
    /// Parks with no park mode.
    #[error("advertises park with no park mode")]
    ParkWithoutMode,
    /// Completes transfers with no transfer mode.
    #[error("advertises complete-transfer with no mode")]
    CompleteTransferWithoutMode,
}

/// An event that breaks the model: the order of a call's reports or the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventFlaw {
    /// A call reported as new twice.
    #[error("{0} reported as new twice")]
    NewTwice(CallLegId),
    /// A call reported as new in a state no call starts in.
    #[error("{leg} reported as new in state {state:?}")]
    BadInitialState {
        /// The call.
        leg: CallLegId,
        /// Its first state.
        state: CallState,
    },
    /// A state or call information for a call before its new-call report.
    #[error("an event for {0} before its new-call report")]
    BeforeNewCall(CallLegId),
    /// A state or call information for a call after it went idle.
    #[error("an event for {0} after idle")]
    AfterIdle(CallLegId),
    /// A state change the transition table does not allow.
    #[error("{leg}: {from:?} -> {to:?} is not in the transition table")]
    NotInTable {
        /// The call.
        leg: CallLegId,
        /// The state it was in.
        from: CallState,
        /// The state reported.
        to: CallState,
    },
}
