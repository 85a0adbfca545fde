//! SIP status codes and the call model's outcomes: one table, read both ways.

use tapir_core::state::{BusyMode, CallState, DisconnectReason};

/// What a final failure response to an INVITE means for the call that made it (RFC 3261 §21, the
/// usual carrier practice for the 6xx and 5xx classes).
pub(crate) fn outcome(status: u16) -> CallState {
    use DisconnectReason::*;
    let reason = match status {
        486 | 600 => return CallState::Busy(BusyMode::Station),
        480 | 408 => NoAnswer,
        404 | 484 | 604 => BadAddress,
        403 | 503 => Unavailable,
        603 => Reject,
        487 => Cancelled,
        410 => NumberChanged,
        488 | 606 | 415 => Incompatible,
        482 | 483 | 502 | 504 => Unreachable,
        500..=599 => TemporaryFailure,
        _ => Unknown,
    };
    CallState::Disconnected(reason)
}

/// The status that tells a caller why its call did not go through: the inverse of [`outcome`] for
/// the reasons a call can end with before it is answered.
pub(crate) fn status(outcome: CallState) -> u16 {
    use DisconnectReason::*;
    match outcome {
        CallState::Busy(_) => 486,
        CallState::Disconnected(r) => match r {
            NoAnswer => 480,
            BadAddress => 404,
            Unavailable | OutOfOrder => 503,
            Reject | Blocked => 603,
            Cancelled => 487,
            NumberChanged => 410,
            Incompatible => 488,
            Unreachable | Congestion => 502,
            DoNotDisturb => 486,
            TemporaryFailure | QosUnavailable => 500,
            Busy => 486,
            Normal | Unknown | PickedUp | Forwarded | NoDialTone => 480,
        },
        _ => 480,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_codes_map_as_listed() {
        assert_eq!(outcome(486), CallState::Busy(BusyMode::Station));
        for (code, reason) in [
            (480, DisconnectReason::NoAnswer),
            (408, DisconnectReason::NoAnswer),
            (404, DisconnectReason::BadAddress),
            (484, DisconnectReason::BadAddress),
            (403, DisconnectReason::Unavailable),
            (503, DisconnectReason::Unavailable),
            (487, DisconnectReason::Cancelled),
            (603, DisconnectReason::Reject),
        ] {
            assert_eq!(outcome(code), CallState::Disconnected(reason), "{code}");
        }
    }

    #[test]
    fn a_reason_relayed_to_a_caller_means_the_same_there() {
        for code in [486, 480, 404, 503, 603, 487, 488, 410] {
            assert_eq!(status(outcome(code)), code, "{code}");
        }
    }
}
