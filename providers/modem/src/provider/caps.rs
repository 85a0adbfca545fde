//! What a modem line can do.

use tapir_core::caps::{AddressCaps, AnswerMode, DialCaps, LineCaps};
use tapir_core::gate::{CallOperation, FeatureSet};
use tapir_core::media::MediaModes;

/// The capabilities of a modem line: basic call control; voice modems add digits.
pub(super) fn line_caps(number: &str, voice: bool) -> LineCaps {
    let mut address = AddressCaps::basic(number);
    let mut ops = vec![
        CallOperation::Accept,
        CallOperation::Answer,
        CallOperation::Reject,
        CallOperation::Drop,
        CallOperation::Dial,
    ];
    if voice {
        ops.extend([CallOperation::GenerateDigits, CallOperation::MonitorDigits]);
    }
    address.call_features = FeatureSet::from_slice(&ops);
    let media = if voice {
        MediaModes::DATA_MODEM | MediaModes::INTERACTIVE_VOICE | MediaModes::AUTOMATED_VOICE
    } else {
        MediaModes::DATA_MODEM
    };
    LineCaps {
        name: format!("Modem {number}"),
        addresses: vec![address],
        media_modes: media,
        dial: DialCaps {
            partial_dial: true,
            wait_for_dial_tone: true,
            wait_for_quiet: true,
            wait_for_billing: true,
            flash: true,
            pulse: true,
        },
        answer_mode: AnswerMode::None,
    }
}
