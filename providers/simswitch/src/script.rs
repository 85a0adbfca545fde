//! How the simulated switch is configured, and how scripted far ends behave.

use std::time::Duration;

/// One extension: a line with one address (its directory number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The directory number, e.g. `"100"`. Digits only.
    pub number: String,
    /// The display name presented as caller ID, e.g. `"Alice"`.
    pub name: String,
}

/// What a scripted outside number does when called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answers after this many rings (one ring per ring period). A count that would outlast the
    /// no-answer timeout means no answer.
    AfterRings(u32),
    /// Rings until the caller or the no-answer timeout gives up.
    Never,
    /// Busy.
    Busy,
    /// Rejects the call.
    Reject,
    /// The network cannot reach it.
    Unreachable,
}

/// A scripted far end: an outside number and what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FarEnd {
    /// What happens when it is called.
    pub answer: Answer,
    /// Once connected, it hangs up after this long.
    pub hang_up_after: Option<Duration>,
    /// The name it presents (caller ID when it calls in, connected ID when it answers).
    pub name: Option<String>,
}

impl FarEnd {
    /// Answers after `rings` rings.
    pub fn answers_after_rings(rings: u32) -> Self {
        Self::with(Answer::AfterRings(rings))
    }
    /// Never answers.
    pub fn never_answers() -> Self {
        Self::with(Answer::Never)
    }
    /// Is busy.
    pub fn busy() -> Self {
        Self::with(Answer::Busy)
    }
    /// Rejects calls.
    pub fn rejects() -> Self {
        Self::with(Answer::Reject)
    }
    /// Cannot be reached.
    pub fn unreachable() -> Self {
        Self::with(Answer::Unreachable)
    }
    fn with(answer: Answer) -> Self {
        Self {
            answer,
            hang_up_after: None,
            name: None,
        }
    }
    /// Hangs up `after` this long once connected.
    pub fn hangs_up_after(mut self, after: Duration) -> Self {
        self.hang_up_after = Some(after);
        self
    }
    /// Presents `name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// When the caller ID of an incoming call is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CallerIdTiming {
    /// With the offer, as a digital trunk or an internal call delivers it.
    #[default]
    WithOffer,
    /// Between the first and second ring, as an analogue line delivers it: the call is offered without
    /// it, and a call-information change follows.
    AfterFirstRing,
}

/// Caller ID of a call from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerId {
    /// Presented.
    Number {
        /// The number.
        number: String,
        /// The name, if presented.
        name: Option<String>,
    },
    /// Withheld by the caller.
    Withheld,
    /// Not delivered by the network.
    OutOfArea,
}

impl CallerId {
    /// A presented number.
    pub fn number(number: impl Into<String>) -> Self {
        Self::Number {
            number: number.into(),
            name: None,
        }
    }
    /// A presented number and name.
    pub fn named(number: impl Into<String>, name: impl Into<String>) -> Self {
        Self::Number {
            number: number.into(),
            name: Some(name.into()),
        }
    }
}

/// A call from outside to an extension, as a test scripts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingIn {
    /// The extension called.
    pub to: String,
    /// Who is calling.
    pub from: CallerId,
    /// The caller gives up if not answered within this long (by default it rings until the switch's
    /// no-answer timeout).
    pub give_up_after: Option<Duration>,
    /// Once answered, the caller hangs up after this long.
    pub hang_up_after: Option<Duration>,
}

impl RingIn {
    /// A call to extension `to` from `from`.
    pub fn new(to: impl Into<String>, from: CallerId) -> Self {
        Self {
            to: to.into(),
            from,
            give_up_after: None,
            hang_up_after: None,
        }
    }
    /// The caller gives up after `after` unanswered.
    pub fn give_up_after(mut self, after: Duration) -> Self {
        self.give_up_after = Some(after);
        self
    }
    /// The caller hangs up `after` this long once answered.
    pub fn hang_up_after(mut self, after: Duration) -> Self {
        self.hang_up_after = Some(after);
        self
    }
}

/// Timing of the simulated switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Time from one ring to the next (North American cadence: 2 s on, 4 s off = 6 s).
    pub ring_period: Duration,
    /// An unanswered call is given up after this long.
    pub no_answer_timeout: Duration,
    /// When caller ID of outside calls is delivered.
    pub caller_id: CallerIdTiming,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ring_period: Duration::from_secs(6),
            no_answer_timeout: Duration::from_secs(30),
            caller_id: CallerIdTiming::WithOffer,
        }
    }
}

/// A park lot: the orbits calls can be parked in, and how long a parked call waits before it comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkLot {
    /// The orbits, e.g. `"701"` … `"710"`. Non-directed park picks the first free one.
    pub orbits: Vec<String>,
    /// A call parked longer than this rings its parker again, reason *reminder*.
    pub timeout: Duration,
}

impl Default for ParkLot {
    fn default() -> Self {
        Self {
            orbits: (701..=710).map(|o| o.to_string()).collect(),
            timeout: Duration::from_secs(60),
        }
    }
}
