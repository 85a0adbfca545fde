//! Dial strings: parsing, validation, and checking against what a line can honour.
//!
//! A dial string is what a switch or modem dials: `0-9`, `A-D`, `*`, `#`, and modifiers — `!` hook flash,
//! `P`/`T` pulse/tone, `,` pause, `W` wait for dial tone, `@` wait for quiet answer, `$` wait for the
//! billing tone, `?` prompt the user, `:` wait for a voice prompt, and a trailing `;` for partial dialling.
//! A leading `+` marks a fully qualified number. Spaces, `-`, `.`, `(` and `)` are formatting and are
//! dropped. Anything after `|` is a subaddress and anything after `^` a name; neither is dialled.
//!
//! ```
//! use tapir_core::dial::DialString;
//! use tapir_core::caps::DialCaps;
//!
//! let d = DialString::parse("9W1 (425) 555-0100").unwrap();
//! assert_eq!(d.dialable(), "9W14255550100");
//! // A line that cannot wait for dial tone refuses it before anything is dialled.
//! assert!(d.check(&DialCaps::default()).is_err());
//! ```

use std::fmt;

use crate::caps::DialCaps;

/// The longest dial string accepted, in characters.
pub const MAX_DIAL_STRING: usize = 128;

/// Whether `c` is a DTMF digit: 0–9, `*`, `#` and A–D (upper case; callers that accept lower case
/// say so). The one rule for digits sent, detected and reported, by every provider.
pub const fn is_dtmf_digit(c: char) -> bool {
    matches!(c, '0'..='9' | 'A'..='D' | '*' | '#')
}

/// A dial modifier that a line may or may not honour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DialModifier {
    /// `W`: wait for dial tone.
    WaitForDialTone,
    /// `@`: wait for quiet answer.
    WaitForQuiet,
    /// `$`: wait for the billing tone.
    WaitForBilling,
    /// `?`: prompt the user. No provider honours it.
    Prompt,
    /// `!`: hook flash.
    Flash,
    /// `P`: pulse dialling.
    Pulse,
    /// `;` at the end: partial dialling.
    Partial,
}

/// A dial string uses a modifier the line does not honour (see [`DialString::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModifierUnsupported(pub DialModifier);

impl DialModifier {
    /// The character that stands for the modifier.
    pub const fn symbol(self) -> char {
        match self {
            Self::WaitForDialTone => 'W',
            Self::WaitForQuiet => '@',
            Self::WaitForBilling => '$',
            Self::Prompt => '?',
            Self::Flash => '!',
            Self::Pulse => 'P',
            Self::Partial => ';',
        }
    }
}

impl fmt::Display for DialModifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.symbol())
    }
}

/// Why a dial string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialStringError {
    /// Nothing to dial where something is required.
    #[error("empty")]
    Empty,
    /// Longer than [`MAX_DIAL_STRING`].
    #[error("{len} characters, at most {MAX_DIAL_STRING}")]
    TooLong {
        /// Its length in characters.
        len: usize,
    },
    /// A character that is neither a digit, a modifier nor formatting.
    #[error("{ch:?} at position {position} is not dialable")]
    InvalidCharacter {
        /// The character.
        ch: char,
        /// Its position (in characters, from 0).
        position: usize,
    },
    /// `+` anywhere but first.
    #[error("'+' at position {position}; it may only come first")]
    MisplacedPlus {
        /// Its position.
        position: usize,
    },
    /// `;` anywhere but last.
    #[error("';' at position {position}; it may only come last")]
    MisplacedSemicolon {
        /// Its position.
        position: usize,
    },
}

/// A parsed, valid dial string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialString {
    dialable: String,
    partial: bool,
    subaddress: Option<String>,
    name: Option<String>,
}

impl DialString {
    /// Parses a dial string. An empty string (or one of only formatting) is valid here — `dial("")` ends a
    /// partial dial; callers that need a destination use [`DialString::parse_destination`].
    pub fn parse(input: &str) -> Result<Self, DialStringError> {
        let len = input.chars().count();
        if len > MAX_DIAL_STRING {
            return Err(DialStringError::TooLong { len });
        }
        let (number, name) = match input.split_once('^') {
            Some((n, name)) => (n, Some(name.to_owned())),
            None => (input, None),
        };
        let (number, subaddress) = match number.split_once('|') {
            Some((n, s)) => (n, Some(s.to_owned())),
            None => (number, None),
        };
        let mut dialable = String::with_capacity(number.len());
        let mut partial = false;
        for (position, ch) in number.chars().enumerate() {
            if partial {
                return Err(DialStringError::MisplacedSemicolon {
                    position: position - 1,
                });
            }
            match ch {
                ' ' | '-' | '.' | '(' | ')' => {}
                '+' if dialable.is_empty() => dialable.push('+'),
                '+' => return Err(DialStringError::MisplacedPlus { position }),
                ';' => partial = true,
                '0'..='9' | '*' | '#' | '!' | ',' | '@' | '$' | '?' | ':' => dialable.push(ch),
                'A'..='D' | 'P' | 'T' | 'W' => dialable.push(ch),
                'a'..='d' | 'p' | 't' | 'w' => dialable.push(ch.to_ascii_uppercase()),
                _ => return Err(DialStringError::InvalidCharacter { ch, position }),
            }
        }
        Ok(Self {
            dialable,
            partial,
            subaddress,
            name,
        })
    }

    /// Parses a dial string that must name a destination (at least one character to dial).
    pub fn parse_destination(input: &str) -> Result<Self, DialStringError> {
        let d = Self::parse(input)?;
        if d.dialable.is_empty() && !d.partial {
            return Err(DialStringError::Empty);
        }
        Ok(d)
    }

    /// What is dialled, formatting removed, letters upper-cased, without the trailing `;`.
    pub fn dialable(&self) -> &str {
        &self.dialable
    }
    /// Whether the string ends in `;` (more digits will follow with dial).
    pub fn is_partial(&self) -> bool {
        self.partial
    }
    /// The subaddress after `|`, if any.
    pub fn subaddress(&self) -> Option<&str> {
        self.subaddress.as_deref()
    }
    /// The name after `^`, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// Only the digits (`0-9 A-D * #` and a leading `+`), without any modifier — what a switch routes on.
    pub fn digits(&self) -> String {
        self.dialable
            .chars()
            .filter(|c| is_dtmf_digit(*c) || *c == '+')
            .collect()
    }

    /// The modifiers the string uses, in order of first appearance.
    pub fn modifiers(&self) -> Vec<DialModifier> {
        let mut out = Vec::new();
        for ch in self.dialable.chars() {
            let m = match ch {
                'W' => DialModifier::WaitForDialTone,
                '@' => DialModifier::WaitForQuiet,
                '$' => DialModifier::WaitForBilling,
                '?' => DialModifier::Prompt,
                '!' => DialModifier::Flash,
                'P' => DialModifier::Pulse,
                _ => continue,
            };
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if self.partial {
            out.push(DialModifier::Partial);
        }
        out
    }

    /// Checks the string against what a line honours; the first modifier it cannot honour is the error
    /// (which `?` turns into [`Error::DialModifierUnsupported`](crate::Error::DialModifierUnsupported)).
    /// `?` (prompt the user) is never honoured: a service has no user to prompt.
    pub fn check(&self, caps: &DialCaps) -> Result<(), ModifierUnsupported> {
        for m in self.modifiers() {
            let ok = match m {
                DialModifier::WaitForDialTone => caps.wait_for_dial_tone,
                DialModifier::WaitForQuiet => caps.wait_for_quiet,
                DialModifier::WaitForBilling => caps.wait_for_billing,
                DialModifier::Prompt => false,
                DialModifier::Flash => caps.flash,
                DialModifier::Pulse => caps.pulse,
                DialModifier::Partial => caps.partial_dial,
            };
            if !ok {
                return Err(ModifierUnsupported(m));
            }
        }
        Ok(())
    }
}

impl fmt::Display for DialString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dialable)?;
        if self.partial {
            f.write_str(";")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dtmf_digits_are_the_sixteen_keys() {
        let all: String = ('\0'..='\u{7f}').filter(|c| is_dtmf_digit(*c)).collect();
        assert_eq!(all, "#*0123456789ABCD");
    }

    #[test]
    fn formatting_is_dropped_and_letters_upper_cased() {
        let d = DialString::parse("+1 (425) 555-0100").unwrap();
        assert_eq!(d.dialable(), "+14255550100");
        assert_eq!(
            DialString::parse("9w,t123*#").unwrap().dialable(),
            "9W,T123*#"
        );
    }

    #[test]
    fn subaddress_and_name_are_not_dialled() {
        let d = DialString::parse("5550100|12^Alice").unwrap();
        assert_eq!(d.dialable(), "5550100");
        assert_eq!(d.subaddress(), Some("12"));
        assert_eq!(d.name(), Some("Alice"));
    }

    #[test]
    fn partial_dial_only_at_the_end() {
        let d = DialString::parse("555;").unwrap();
        assert!(d.is_partial());
        assert_eq!(d.to_string(), "555;");
        assert_eq!(
            DialString::parse("55;5"),
            Err(DialStringError::MisplacedSemicolon { position: 2 })
        );
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert_eq!(
            DialString::parse("55x5"),
            Err(DialStringError::InvalidCharacter {
                ch: 'x',
                position: 2
            })
        );
        assert_eq!(
            DialString::parse("5+5"),
            Err(DialStringError::MisplacedPlus { position: 1 })
        );
        assert_eq!(
            DialString::parse(&"1".repeat(200)),
            Err(DialStringError::TooLong { len: 200 })
        );
        assert_eq!(
            DialString::parse_destination(" - "),
            Err(DialStringError::Empty)
        );
        assert!(DialString::parse("").is_ok());
        assert!(DialString::parse("５").is_err());
    }

    #[test]
    fn modifiers_are_checked_against_caps() {
        let caps = DialCaps {
            partial_dial: true,
            wait_for_dial_tone: true,
            ..DialCaps::default()
        };
        assert!(DialString::parse("9W555;").unwrap().check(&caps).is_ok());
        assert_eq!(
            DialString::parse("9@555").unwrap().check(&caps),
            Err(ModifierUnsupported(DialModifier::WaitForQuiet))
        );
        assert_eq!(
            DialString::parse("555?").unwrap().check(&caps),
            Err(ModifierUnsupported(DialModifier::Prompt))
        );
        assert_eq!(
            DialString::parse("555;")
                .unwrap()
                .check(&DialCaps::default()),
            Err(ModifierUnsupported(DialModifier::Partial))
        );
    }

    #[test]
    fn digits_strip_modifiers() {
        assert_eq!(DialString::parse("9,W555!1").unwrap().digits(), "95551");
    }
}
