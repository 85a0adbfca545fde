//! Media modes: what kind of traffic a call carries (voice, data modem, fax …).

use std::fmt;

/// A set of media modes, as a bit set (TAPI's `LINEMEDIAMODE_*` values).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MediaModes(u32);

impl MediaModes {
    /// No media mode.
    pub const NONE: Self = Self(0);
    /// Media not yet known.
    pub const UNKNOWN: Self = Self(0x2);
    /// A person on the line.
    pub const INTERACTIVE_VOICE: Self = Self(0x4);
    /// A machine speaking (answering machine, IVR).
    pub const AUTOMATED_VOICE: Self = Self(0x8);
    /// A data modem.
    pub const DATA_MODEM: Self = Self(0x10);
    /// Group 3 fax.
    pub const G3_FAX: Self = Self(0x20);
    /// Telecommunication device for the deaf.
    pub const TDD: Self = Self(0x40);
    /// Group 4 fax.
    pub const G4_FAX: Self = Self(0x80);
    /// Digital data.
    pub const DIGITAL_DATA: Self = Self(0x100);
    /// Video.
    pub const VIDEO: Self = Self(0x8000);
    /// Every mode tapir knows.
    pub const ALL: Self = Self(0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x8000);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Builds a set from raw bits, or `None` if a bit is not a known media mode.
    pub const fn from_bits(bits: u32) -> Option<Self> {
        if bits & !Self::ALL.0 == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }
    /// Whether every mode of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether the two sets share a mode.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether exactly one mode is set.
    pub const fn is_single(self) -> bool {
        self.0.count_ones() == 1
    }
}

impl std::ops::BitOr for MediaModes {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Debug for MediaModes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(MediaModes, &str); 9] = [
            (MediaModes::UNKNOWN, "unknown"),
            (MediaModes::INTERACTIVE_VOICE, "interactive-voice"),
            (MediaModes::AUTOMATED_VOICE, "automated-voice"),
            (MediaModes::DATA_MODEM, "data-modem"),
            (MediaModes::G3_FAX, "g3-fax"),
            (MediaModes::TDD, "tdd"),
            (MediaModes::G4_FAX, "g4-fax"),
            (MediaModes::DIGITAL_DATA, "digital-data"),
            (MediaModes::VIDEO, "video"),
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(m, _)| self.contains(*m))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "MediaModes({})", names.join("|"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bits_are_rejected() {
        assert_eq!(
            MediaModes::from_bits(0x4),
            Some(MediaModes::INTERACTIVE_VOICE)
        );
        assert_eq!(MediaModes::from_bits(0x1), None);
        assert_eq!(MediaModes::from_bits(0x10000), None);
    }

    #[test]
    fn set_operations() {
        let m = MediaModes::INTERACTIVE_VOICE | MediaModes::DATA_MODEM;
        assert!(m.contains(MediaModes::DATA_MODEM));
        assert!(!m.contains(MediaModes::G3_FAX));
        assert!(m.intersects(MediaModes::DATA_MODEM | MediaModes::G3_FAX));
        assert!(!m.is_single());
        assert_eq!(format!("{m:?}"), "MediaModes(interactive-voice|data-modem)");
    }
}
