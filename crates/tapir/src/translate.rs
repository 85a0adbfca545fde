//! Address translation: a canonical number (`+1 (425) 555-0100`) and a [`Location`] give the string to
//! dial from there, the way TAPI's line translate does.
//!
//! Country facts — a country's calling code, its national (trunk) prefix and its international prefix —
//! come from the `phonenumber` crate's copy of libphonenumber's metadata; a location may override the
//! prefixes, and adds what only the site knows: its area code, outside-line access codes, toll prefixes,
//! the cancel-call-waiting string and pulse dialling.
//!
//! ```
//! use tapir::translate::{Location, TranslateOptions, translate_address};
//!
//! let seattle = Location::new("US", "425").with_local_access("9");
//! let out = translate_address("+1 (425) 555-0100", &seattle, TranslateOptions::default()).unwrap();
//! assert_eq!(out.dialable, "95550100");
//! assert!(out.flags.local);
//! let out = translate_address("+49 (30) 1234567", &seattle, TranslateOptions::default()).unwrap();
//! assert_eq!(out.dialable, "01149301234567"); // international prefix 011, no access code set for it
//! assert!(out.flags.international);
//! ```

use phonenumber::metadata::DATABASE;
use tapir_core::Error;
use tapir_core::dial::{DialString, is_dtmf_digit};

/// Where a call is dialled from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Location {
    /// A name for people, e.g. `"Seattle office"`.
    pub name: String,
    /// The country, as an ISO 3166 region code (`"US"`, `"GB"`, `"DE"`).
    pub country: String,
    /// The area (city) code, without the national prefix (`"425"`, `"20"`, `"30"`).
    pub area_code: String,
    /// Dialled first to reach an outside line for local calls (e.g. `"9"`).
    pub local_access: String,
    /// Dialled first to reach an outside line for long-distance and international calls.
    pub long_distance_access: String,
    /// Overrides the country's national (trunk) prefix for long-distance calls (`"1"` in the US).
    pub long_distance_prefix: Option<String>,
    /// Overrides the country's international prefix (`"011"` in the US, `"00"` in Europe).
    pub international_prefix: Option<String>,
    /// Local exchanges that are toll calls and must be dialled as long distance (e.g. `["976"]`).
    pub toll_prefixes: Vec<String>,
    /// Dialled first to turn call waiting off for the call (e.g. `"*70,"`), when asked to.
    pub cancel_call_waiting: String,
    /// Pulse dialling: the dialable string starts with `P`.
    pub pulse: bool,
}

impl Location {
    /// A location in `country` (ISO region code) with area code `area_code`.
    pub fn new(country: impl Into<String>, area_code: impl Into<String>) -> Self {
        Self {
            country: country.into(),
            area_code: area_code.into(),
            ..Self::default()
        }
    }
    /// Checks the location: a known country, digits-only area code, and dialable access codes and
    /// prefixes.
    pub fn check(&self) -> Result<(), Error> {
        country(&self.country)?;
        if !self.area_code.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad(format!(
                "area code {:?} must be digits",
                self.area_code
            )));
        }
        let codes = [
            &self.local_access,
            &self.long_distance_access,
            &self.cancel_call_waiting,
        ];
        let prefixes = [&self.long_distance_prefix, &self.international_prefix];
        for code in codes.into_iter().chain(prefixes.into_iter().flatten()) {
            DialString::parse(code).map_err(Error::InvalidDialString)?;
        }
        Ok(())
    }
    /// Sets the outside-line access code for local calls.
    pub fn with_local_access(mut self, code: impl Into<String>) -> Self {
        self.local_access = code.into();
        self
    }
    /// Sets the outside-line access code for long-distance and international calls.
    pub fn with_long_distance_access(mut self, code: impl Into<String>) -> Self {
        self.long_distance_access = code.into();
        self
    }
    /// Sets the toll prefix list.
    pub fn with_toll_prefixes(mut self, prefixes: &[&str]) -> Self {
        self.toll_prefixes = prefixes.iter().map(|p| (*p).to_owned()).collect();
        self
    }
    /// Sets the cancel-call-waiting string.
    pub fn with_cancel_call_waiting(mut self, code: impl Into<String>) -> Self {
        self.cancel_call_waiting = code.into();
        self
    }
}

/// Options of one translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TranslateOptions {
    /// Prefix the location's cancel-call-waiting string.
    pub cancel_call_waiting: bool,
    /// Dial as a local call even if it looks long distance.
    pub force_local: bool,
    /// Dial as long distance even if it looks local.
    pub force_long_distance: bool,
}

/// What a translation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TranslateFlags {
    /// The input was canonical (`+…`).
    pub canonical: bool,
    /// Dialled as an international call.
    pub international: bool,
    /// Dialled as a long-distance call.
    pub long_distance: bool,
    /// Dialled as a local call.
    pub local: bool,
    /// A local number whose exchange is in the toll list (so dialled long distance).
    pub in_toll_list: bool,
    /// A local number whose exchange is not in the (non-empty) toll list.
    pub not_in_toll_list: bool,
    /// Contains `$` (wait for the billing tone).
    pub dial_billing: bool,
    /// Contains `@` (wait for quiet answer).
    pub dial_quiet: bool,
    /// Contains `W` (wait for dial tone).
    pub dial_dial_tone: bool,
    /// Contains `?` (prompt the user).
    pub dial_prompt: bool,
    /// The input was not canonical and is returned as it was.
    pub no_translation: bool,
}

/// The result of [`translate_address`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translated {
    /// What to dial (give it to make call or dial).
    pub dialable: String,
    /// What to show people: the dialable string without subaddress and name.
    pub displayable: String,
    /// The location's country calling code.
    pub current_country: u16,
    /// The destination's country calling code; 0 when the input was not canonical.
    pub dest_country: u16,
    /// What the translation found.
    pub flags: TranslateFlags,
}

fn bad(reason: String) -> Error {
    Error::InvalidAddress { reason }
}

/// The country facts of `region`: calling code, national prefix, international prefix.
fn country(region: &str) -> Result<(u16, String, String), Error> {
    let meta = DATABASE.by_id(region).ok_or_else(|| {
        bad(format!(
            "{region:?} is not a known country (use an ISO region code)"
        ))
    })?;
    let national = meta.national_prefix().unwrap_or_default().to_owned();
    let international = meta
        .preferred_international_prefix()
        .map(str::to_owned)
        .or_else(|| {
            meta.international_prefix()
                .map(|r| r.as_str().to_owned())
                .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        })
        .unwrap_or_default();
    Ok((meta.country_code(), national, international))
}

/// Splits `^name` and `|subaddress` off the end; returns (number, tail as written).
fn split_tail(input: &str) -> (&str, &str) {
    match input.find(['|', '^']) {
        Some(i) => (&input[..i], &input[i..]),
        None => (input, ""),
    }
}

/// Translates `input` for dialling from `location`.
///
/// Canonical input is `+Country (Area) Subscriber[|Subaddress][^Name]`; the area code in parentheses is
/// optional, and spaces, `.` and `-` in the subscriber number are formatting. Input that does not start
/// with `+` is already dialable: it is checked and returned unchanged, flagged `no_translation`.
pub fn translate_address(
    input: &str,
    location: &Location,
    options: TranslateOptions,
) -> Result<Translated, Error> {
    let (current_country, national_prefix, international_prefix) = country(&location.country)?;
    let input = input.trim();
    let Some(canonical) = input.strip_prefix('+') else {
        let parsed = DialString::parse(input).map_err(Error::InvalidDialString)?;
        let (number, _) = split_tail(input);
        let mut flags = modifier_flags(parsed.dialable());
        flags.no_translation = true;
        return Ok(Translated {
            dialable: input.to_owned(),
            displayable: number.to_owned(),
            current_country,
            dest_country: 0,
            flags,
        });
    };
    let (number, tail) = split_tail(canonical);

    // Country code: the digits up to the first space or parenthesis. A number written without that
    // separator (`+14255550100`) is split by the phone-number metadata instead.
    let cc_len = number
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(number.len());
    let split;
    let (cc_digits, rest) = if cc_len > 3 {
        let digits_only = &number[..cc_len];
        let parsed = phonenumber::parse(None, format!("+{digits_only}"))
            .map_err(|e| bad(format!("{input:?}: {e}")))?;
        let code = parsed.code().value().to_string();
        let national = &digits_only[code.len()..];
        split = (code, format!(" {national}{}", &number[cc_len..]));
        (split.0.as_str(), split.1.as_str())
    } else {
        number.split_at(cc_len)
    };
    if cc_digits.is_empty() {
        return Err(bad(format!("{input:?}: no country code after '+'")));
    }
    let dest_country: u16 = cc_digits
        .parse()
        .map_err(|_| bad(format!("{input:?}: country code {cc_digits} is too long")))?;
    if DATABASE.by_code(&dest_country).is_none() {
        return Err(bad(format!(
            "{input:?}: country code {dest_country} does not exist"
        )));
    }

    // Area code in parentheses, then the subscriber number with formatting and dial modifiers.
    let rest = rest.trim_start();
    let (area, subscriber) = match rest.strip_prefix('(') {
        Some(after) => {
            let close = after
                .find(')')
                .ok_or_else(|| bad(format!("{input:?}: '(' without ')'")))?;
            let area = &after[..close];
            if area.is_empty() || !area.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad(format!("{input:?}: the area code must be digits")));
            }
            (area.to_owned(), &after[close + 1..])
        }
        None => (String::new(), rest),
    };
    let mut digits = String::new();
    let mut modifiers = String::new();
    for c in subscriber.chars() {
        match c {
            c if is_dtmf_digit(c) => digits.push(c),
            'W' | 'w' | '@' | '$' | '?' | '!' | ',' | 'P' | 'p' | 'T' | 't' => {
                modifiers.push(c.to_ascii_uppercase());
                digits.push(c.to_ascii_uppercase());
            }
            ' ' | '.' | '-' => {}
            '(' | ')' => {
                return Err(bad(format!(
                    "{input:?}: unbalanced or misplaced parentheses"
                )));
            }
            c => {
                return Err(bad(format!(
                    "{input:?}: {c:?} is not part of a phone number"
                )));
            }
        }
    }
    if !digits.chars().any(|c| c.is_ascii_digit()) {
        return Err(bad(format!("{input:?}: no subscriber number")));
    }
    // Without parentheses, an area code is recognised by the location's own.
    let (area, subscriber) = if area.is_empty()
        && dest_country == current_country
        && !location.area_code.is_empty()
        && digits.starts_with(&location.area_code)
    {
        (
            location.area_code.clone(),
            digits[location.area_code.len()..].to_owned(),
        )
    } else {
        (area, digits)
    };

    let mut flags = modifier_flags(&modifiers);
    flags.canonical = true;
    let ld_prefix = location
        .long_distance_prefix
        .clone()
        .unwrap_or(national_prefix);
    let intl_prefix = location
        .international_prefix
        .clone()
        .unwrap_or(international_prefix);
    let same_area =
        dest_country == current_country && (area.is_empty() || area == location.area_code);
    let in_toll_list = same_area
        && location
            .toll_prefixes
            .iter()
            .any(|p| !p.is_empty() && subscriber.starts_with(p.as_str()));
    let mut dialable = String::new();
    if location.pulse {
        dialable.push('P');
    }
    if options.cancel_call_waiting {
        dialable.push_str(&location.cancel_call_waiting);
    }
    if dest_country != current_country {
        flags.international = true;
        dialable.push_str(&location.long_distance_access);
        dialable.push_str(&intl_prefix);
        dialable.push_str(cc_digits);
        dialable.push_str(&area);
        dialable.push_str(&subscriber);
    } else if options.force_local || (same_area && !in_toll_list && !options.force_long_distance) {
        flags.local = true;
        flags.not_in_toll_list = !location.toll_prefixes.is_empty();
        dialable.push_str(&location.local_access);
        dialable.push_str(&subscriber);
    } else {
        flags.long_distance = true;
        flags.in_toll_list = in_toll_list;
        let area = if area.is_empty() {
            location.area_code.as_str()
        } else {
            area.as_str()
        };
        dialable.push_str(&location.long_distance_access);
        dialable.push_str(&ld_prefix);
        dialable.push_str(area);
        dialable.push_str(&subscriber);
    }
    let displayable = dialable.clone();
    dialable.push_str(tail);
    DialString::parse(&dialable).map_err(Error::InvalidDialString)?;
    Ok(Translated {
        dialable,
        displayable,
        current_country,
        dest_country,
        flags,
    })
}

fn modifier_flags(s: &str) -> TranslateFlags {
    TranslateFlags {
        dial_billing: s.contains('$'),
        dial_quiet: s.contains('@'),
        dial_dial_tone: s.contains(['W', 'w']),
        dial_prompt: s.contains('?'),
        ..TranslateFlags::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Location {
        Location::new("US", "425")
            .with_local_access("9")
            .with_long_distance_access("9")
            .with_toll_prefixes(&["976"])
            .with_cancel_call_waiting("*70,")
    }
    fn uk() -> Location {
        Location::new("GB", "20")
    }
    fn de() -> Location {
        Location::new("DE", "30")
            .with_local_access("0")
            .with_long_distance_access("0")
    }

    /// (location, input, dialable, local, long distance, international)
    #[test]
    fn table() {
        let cases: Vec<(Location, &str, &str, [bool; 3])> = vec![
            // United States, Redmond (425), outside line 9, 976 is a toll exchange.
            (us(), "+1 (425) 882-8080", "98828080", [true, false, false]),
            (
                us(),
                "+1 (206) 555-0100",
                "912065550100",
                [false, true, false],
            ),
            (
                us(),
                "+1 (425) 976-1234",
                "914259761234",
                [false, true, false],
            ),
            (
                us(),
                "+44 (20) 7946 0000",
                "9011442079460000",
                [false, false, true],
            ),
            (
                us(),
                "+49 (30) 1234567",
                "9011493012345 67",
                [false, false, true],
            ),
            (us(), "+14255550100", "95550100", [true, false, false]),
            // United Kingdom, London (20): trunk prefix 0, international 00, no access codes.
            (uk(), "+44 (20) 7946 0000", "79460000", [true, false, false]),
            (
                uk(),
                "+44 (161) 496 0000",
                "01614960000",
                [false, true, false],
            ),
            (
                uk(),
                "+1 (425) 882-8080",
                "0014258828080",
                [false, false, true],
            ),
            // Germany, Berlin (30), behind a PBX with 0 for the outside line.
            (de(), "+49 (30) 1234567", "01234567", [true, false, false]),
            (de(), "+49 (89) 123456", "0089123456", [false, true, false]),
            (
                de(),
                "+44 (20) 7946 0000",
                "0004420 79460000",
                [false, false, true],
            ),
        ];
        for (loc, input, want, [local, ld, intl]) in cases {
            let out = translate_address(input, &loc, TranslateOptions::default())
                .unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                out.dialable,
                want.replace(' ', ""),
                "{input} from {}",
                loc.country
            );
            assert_eq!(
                (
                    out.flags.local,
                    out.flags.long_distance,
                    out.flags.international
                ),
                (local, ld, intl),
                "{input} from {}",
                loc.country
            );
            assert!(out.flags.canonical);
        }
    }

    #[test]
    fn toll_list_flags_and_options() {
        let out = translate_address("+1 (425) 976-1234", &us(), TranslateOptions::default())
            .expect("translates");
        assert!(out.flags.in_toll_list && out.flags.long_distance);
        let out = translate_address("+1 (425) 882-8080", &us(), TranslateOptions::default())
            .expect("translates");
        assert!(out.flags.not_in_toll_list);
        let out = translate_address(
            "+1 (425) 882-8080",
            &us(),
            TranslateOptions {
                cancel_call_waiting: true,
                force_long_distance: true,
                ..TranslateOptions::default()
            },
        )
        .expect("translates");
        assert_eq!(out.dialable, "*70,914258828080");
        let out = translate_address(
            "+1 (206) 555-0100",
            &us(),
            TranslateOptions {
                force_local: true,
                ..TranslateOptions::default()
            },
        )
        .expect("translates");
        assert_eq!(out.dialable, "95550100");
        assert_eq!((out.current_country, out.dest_country), (1, 1));
    }

    #[test]
    fn subaddress_name_and_modifiers() {
        let out = translate_address(
            "+1 (425) 882-8080W123|55^Reception",
            &us(),
            TranslateOptions::default(),
        )
        .expect("translates");
        assert_eq!(out.dialable, "98828080W123|55^Reception");
        assert_eq!(out.displayable, "98828080W123");
        assert!(out.flags.dial_dial_tone);
        assert!(!out.flags.dial_quiet);
    }

    #[test]
    fn dialable_input_is_returned_unchanged() {
        let out =
            translate_address("9,555-0100", &us(), TranslateOptions::default()).expect("dialable");
        assert_eq!(out.dialable, "9,555-0100");
        assert!(out.flags.no_translation && !out.flags.canonical);
        assert_eq!(out.dest_country, 0);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        for input in [
            "+1 (425 882-8080",
            "+1 425) 882-8080",
            "+1 (425) CALL-NOW",
            "+999 (1) 2345678",
            "+",
            "+1 ()",
            "555-HELP",
        ] {
            let r = translate_address(input, &us(), TranslateOptions::default());
            assert!(
                matches!(
                    r,
                    Err(Error::InvalidAddress { .. } | Error::InvalidDialString(_))
                ),
                "{input}: {r:?}"
            );
        }
        assert!(matches!(
            translate_address(
                "+1 (425) 882-8080",
                &Location::new("XX", ""),
                TranslateOptions::default()
            ),
            Err(Error::InvalidAddress { .. })
        ));
    }
}
