//! Call information: who is calling whom, why, and how the call relates to others.

use std::sync::Arc;

use crate::ids::CallId;
use crate::media::MediaModes;

/// Where a call came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CallOrigin {
    /// Placed from this line.
    Outbound,
    /// From another station of the same switch.
    Internal,
    /// From outside the switch.
    External,
    /// Incoming, internal or external not known.
    Inbound,
    /// Created by a conference.
    Conference,
    /// Not known.
    #[default]
    Unknown,
    /// Not reported.
    Unavailable,
}

/// Why a call arrived here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CallReason {
    /// Dialled directly.
    #[default]
    Direct,
    /// Forwarded because the original destination was busy.
    ForwardBusy,
    /// Forwarded because the original destination did not answer.
    ForwardNoAnswer,
    /// Forwarded unconditionally.
    ForwardUnconditional,
    /// Picked up from another station.
    Pickup,
    /// Retrieved from a park orbit.
    Unpark,
    /// Redirected (deflected) by another station.
    Redirect,
    /// A call-completion (camp-on / callback) request came true.
    CallCompletion,
    /// Transferred here.
    Transfer,
    /// A parked or held call came back.
    Reminder,
    /// Not known.
    Unknown,
    /// Not reported.
    Unavailable,
    /// Intrusion.
    Intrude,
    /// Parked.
    Parked,
    /// Camped on.
    CampedOn,
    /// A route request.
    RouteRequest,
}

/// The longest party number or name, in bytes, the engine accepts from a provider. Numbers are at
/// most a few dozen characters (E.164 has fifteen digits; a SIP user part a little more) and display
/// names a few words; anything near this is a fault, and is refused rather than carried to every
/// application.
pub const MAX_PARTY_TEXT: usize = 1024;

/// One party's identity (caller, called, connected, redirecting, redirection).
///
/// Number and name are shared strings: a call's information is copied into every event and every
/// session's view of the call, and an extension's identity into every call it makes, so a copy is a
/// reference count, not an allocation.
///
/// ```
/// use tapir_core::info::PartyId;
///
/// let alice = PartyId::named("100", "Alice");
/// let copy = alice.clone();
/// assert_eq!(copy.number.as_deref(), Some("100"));
/// assert!(std::sync::Arc::ptr_eq(alice.name.as_ref().unwrap(), copy.name.as_ref().unwrap()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PartyId {
    /// The number, preferably canonical (`+15550100`) or an extension (`200`).
    pub number: Option<Arc<str>>,
    /// The display name.
    pub name: Option<Arc<str>>,
    /// The presentation: why number or name may be missing.
    pub presentation: Presentation,
}

impl PartyId {
    /// A party known by number only.
    pub fn number(number: impl Into<Arc<str>>) -> Self {
        Self {
            number: Some(number.into()),
            ..Self::default()
        }
    }
    /// A party known by number and name.
    pub fn named(number: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        Self {
            number: Some(number.into()),
            name: Some(name.into()),
            presentation: Presentation::Allowed,
        }
    }
    /// A party whose identity was withheld.
    pub fn blocked() -> Self {
        Self {
            presentation: Presentation::Blocked,
            ..Self::default()
        }
    }
    /// A party whose identity the network could not deliver.
    pub fn out_of_area() -> Self {
        Self {
            presentation: Presentation::OutOfArea,
            ..Self::default()
        }
    }
}

/// Whether a party's identity was presented, and if not why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Presentation {
    /// Presented (as far as it is known).
    #[default]
    Allowed,
    /// Withheld by the party ("private").
    Blocked,
    /// Not delivered by the network ("out of area").
    OutOfArea,
    /// Known only in part.
    Partial,
    /// Not known.
    Unknown,
    /// Not reported by the provider.
    Unavailable,
}

/// The parties of a redirection (TAPI's redirecting and redirection IDs).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Redirect {
    /// Who redirected the call here.
    pub redirecting: PartyId,
    /// Where the call was redirected to.
    pub redirection: PartyId,
}

impl Redirect {
    /// The redirection of a call that `party` redirected, for [`CallInfo::redirect`]: `None` when
    /// `party` is no one (an empty identity).
    pub fn by(party: PartyId) -> Option<Box<Redirect>> {
        (party != NOBODY).then(|| {
            Box::new(Redirect {
                redirecting: party,
                redirection: PartyId::default(),
            })
        })
    }
}

/// The identity of no one: what an unset party reads as.
static NOBODY: PartyId = PartyId {
    number: None,
    name: None,
    presentation: Presentation::Allowed,
};

/// The information a provider keeps about one call leg.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CallInfo {
    /// The switch's call identity, shared by every application.
    pub call_id: CallId,
    /// A related call (the consultation call's original, a conference's parent).
    pub related_call_id: Option<CallId>,
    /// Where the call came from.
    pub origin: CallOrigin,
    /// Why it arrived here.
    pub reason: CallReason,
    /// The media mode the call carries.
    pub media_mode: MediaModes,
    /// Who originated the call.
    pub caller: PartyId,
    /// Who was dialled.
    pub called: PartyId,
    /// Who was actually reached.
    pub connected: PartyId,
    /// Who redirected the call here and where it was redirected to; `None` for a call that was never
    /// redirected — nearly every call, which then pays for a pointer rather than two parties. Read
    /// them with [`CallInfo::redirecting`] and [`CallInfo::redirection`], set them through
    /// [`CallInfo::redirect_mut`].
    pub redirect: Option<Box<Redirect>>,
    /// Whether the call is secured against interruption (call waiting tones and the like).
    pub secure: bool,
}

/// Which fields of a call's information changed (TAPI's `LINECALLINFOSTATE_*`), as a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InfoChange(u32);

impl InfoChange {
    /// Each field's name, written once: the wire's words for a change.
    const NAMES: [(InfoChange, &'static str); 14] = [
        (InfoChange::MEDIA_MODE, "media-mode"),
        (InfoChange::CALL_ID, "call-id"),
        (InfoChange::RELATED_CALL_ID, "related-call-id"),
        (InfoChange::ORIGIN, "origin"),
        (InfoChange::REASON, "reason"),
        (InfoChange::NUM_OWNERS_INCREASED, "owners+"),
        (InfoChange::NUM_OWNERS_DECREASED, "owners-"),
        (InfoChange::NUM_MONITORS, "monitors"),
        (InfoChange::CALLER_ID, "caller-id"),
        (InfoChange::CALLED_ID, "called-id"),
        (InfoChange::CONNECTED_ID, "connected-id"),
        (InfoChange::REDIRECTION_ID, "redirection-id"),
        (InfoChange::REDIRECTING_ID, "redirecting-id"),
        (InfoChange::SECURE, "secure"),
    ];

    /// The names of the fields in the set, in a fixed order (`called-id`, `owners+`, …).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(c, _)| self.contains(*c))
            .map(|(_, n)| n)
    }
}

impl std::fmt::Display for InfoChange {
    /// The names joined by `|`: `called-id`, `owners+|monitors`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, n) in self.names().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for InfoChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InfoChange({self})")
    }
}

impl InfoChange {
    /// Nothing changed.
    pub const NONE: Self = Self(0);
    /// The media mode.
    pub const MEDIA_MODE: Self = Self(0x10);
    /// The call ID.
    pub const CALL_ID: Self = Self(0x40);
    /// The related call ID.
    pub const RELATED_CALL_ID: Self = Self(0x80);
    /// The origin.
    pub const ORIGIN: Self = Self(0x100);
    /// The reason.
    pub const REASON: Self = Self(0x200);
    /// One more owner.
    pub const NUM_OWNERS_INCREASED: Self = Self(0x800);
    /// One owner fewer.
    pub const NUM_OWNERS_DECREASED: Self = Self(0x1000);
    /// The number of monitors.
    pub const NUM_MONITORS: Self = Self(0x2000);
    /// The caller ID.
    pub const CALLER_ID: Self = Self(0x8000);
    /// The called ID.
    pub const CALLED_ID: Self = Self(0x10000);
    /// The connected ID.
    pub const CONNECTED_ID: Self = Self(0x20000);
    /// The redirection ID.
    pub const REDIRECTION_ID: Self = Self(0x40000);
    /// The redirecting ID.
    pub const REDIRECTING_ID: Self = Self(0x80000);
    /// Whether the call is secure.
    pub const SECURE: Self = Self(0x100000);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Whether every change in `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether nothing changed.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for InfoChange {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for InfoChange {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl CallInfo {
    /// Whether every party's number and name is at most [`MAX_PARTY_TEXT`] bytes long: what the
    /// engine accepts from a provider (a longer one is refused, not cut).
    pub fn text_fits(&self) -> bool {
        let fits = |p: &PartyId| {
            p.number.as_deref().map_or(0, str::len) <= MAX_PARTY_TEXT
                && p.name.as_deref().map_or(0, str::len) <= MAX_PARTY_TEXT
        };
        [
            &self.caller,
            &self.called,
            &self.connected,
            self.redirecting(),
            self.redirection(),
        ]
        .into_iter()
        .all(fits)
    }

    /// Who redirected the call here (an empty identity if no one did).
    pub fn redirecting(&self) -> &PartyId {
        self.redirect.as_ref().map_or(&NOBODY, |r| &r.redirecting)
    }

    /// Where the call was redirected to (an empty identity if it was not).
    pub fn redirection(&self) -> &PartyId {
        self.redirect.as_ref().map_or(&NOBODY, |r| &r.redirection)
    }

    /// The redirection parties, to set them (made empty on first use).
    ///
    /// ```
    /// use tapir_core::info::{CallInfo, PartyId};
    ///
    /// let mut info = CallInfo::default();
    /// assert_eq!(info.redirecting(), &PartyId::default());
    /// info.redirect_mut().redirecting = PartyId::named("200", "Bob");
    /// assert_eq!(info.redirecting().number.as_deref(), Some("200"));
    /// assert_eq!(info.redirection(), &PartyId::default());
    /// ```
    pub fn redirect_mut(&mut self) -> &mut Redirect {
        self.redirect.get_or_insert_with(Box::default)
    }

    /// Which fields differ between `self` (old) and `new`.
    pub fn diff(&self, new: &CallInfo) -> InfoChange {
        let mut c = InfoChange::NONE;
        let mut mark = |changed: bool, bit: InfoChange| {
            if changed {
                c |= bit;
            }
        };
        mark(self.call_id != new.call_id, InfoChange::CALL_ID);
        mark(
            self.related_call_id != new.related_call_id,
            InfoChange::RELATED_CALL_ID,
        );
        mark(self.origin != new.origin, InfoChange::ORIGIN);
        mark(self.reason != new.reason, InfoChange::REASON);
        mark(self.media_mode != new.media_mode, InfoChange::MEDIA_MODE);
        mark(self.caller != new.caller, InfoChange::CALLER_ID);
        mark(self.called != new.called, InfoChange::CALLED_ID);
        mark(self.connected != new.connected, InfoChange::CONNECTED_ID);
        mark(
            self.redirecting() != new.redirecting(),
            InfoChange::REDIRECTING_ID,
        );
        mark(
            self.redirection() != new.redirection(),
            InfoChange::REDIRECTION_ID,
        );
        mark(self.secure != new.secure, InfoChange::SECURE);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_exactly_the_changed_fields() {
        let old = CallInfo::default();
        let mut new = old.clone();
        assert!(old.diff(&new).is_empty());
        new.caller = PartyId::named("+15551234", "Alice");
        new.reason = CallReason::Transfer;
        let d = old.diff(&new);
        assert!(d.contains(InfoChange::CALLER_ID | InfoChange::REASON));
        assert!(!d.contains(InfoChange::CALLED_ID));
        assert_eq!(
            d.bits(),
            (InfoChange::CALLER_ID | InfoChange::REASON).bits()
        );
    }
}
