//! Routing offered calls to applications by **call class**.
//!
//! A call's class is a dotted name built from its media mode and the number it was made to:
//!
//! | media mode | class |
//! |---|---|
//! | interactive or automated voice | `voice` |
//! | data modem | `data.modem` |
//! | digital data | `data.digital` |
//! | G3 fax / G4 fax | `fax.g3` / `fax.g4` |
//! | TDD | `tdd` |
//! | video | `video` |
//! | unknown or several | `unknown` |
//!
//! followed, when the called number is known, by `.` and its digits (other characters dropped):
//! a voice call to `+1 555-1234` has the class `voice.15551234`.
//!
//! A route's class **matches** a call's class when it is the whole class, a leading run of whole
//! dotted segments (`data` matches `data.modem.5551234`), or a leading run of those plus a leading part
//! of the number (`voice.5551` matches `voice.5551234`). Lookup takes the **longest** matching route.
//!
//! ```
//! use tapir_core::media::MediaModes;
//! use tapir_core::route::{call_class, class_matches};
//!
//! let class = call_class(MediaModes::INTERACTIVE_VOICE, Some("555-1234"));
//! assert_eq!(class, "voice.5551234");
//! assert!(class_matches("voice.5551", &class));
//! assert!(class_matches("voice", &class));
//! assert!(!class_matches("voice.56", &class));
//! assert!(!class_matches("vo", &class));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::error::Error;
use crate::media::MediaModes;

/// The longest route class accepted.
pub const MAX_CLASS: usize = 128;

/// The class of a call with media mode `media` made to `called`.
pub fn call_class(media: MediaModes, called: Option<&str>) -> String {
    let base = if media == MediaModes::INTERACTIVE_VOICE
        || media == MediaModes::AUTOMATED_VOICE
        || media == MediaModes::INTERACTIVE_VOICE | MediaModes::AUTOMATED_VOICE
    {
        "voice"
    } else if media == MediaModes::DATA_MODEM {
        "data.modem"
    } else if media == MediaModes::DIGITAL_DATA {
        "data.digital"
    } else if media == MediaModes::G3_FAX {
        "fax.g3"
    } else if media == MediaModes::G4_FAX {
        "fax.g4"
    } else if media == MediaModes::TDD {
        "tdd"
    } else if media == MediaModes::VIDEO {
        "video"
    } else {
        "unknown"
    };
    let digits: String = called
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        base.to_owned()
    } else {
        format!("{base}.{digits}")
    }
}

/// Whether the route class `route` matches the call class `class` (see the module docs).
pub fn class_matches(route: &str, class: &str) -> bool {
    let Some(rest) = class.strip_prefix(route) else {
        return false;
    };
    match rest.chars().next() {
        None | Some('.') => true,
        // Inside the number: a route ending in digits matches a longer number.
        Some(c) => c.is_ascii_digit() && route.ends_with(|r: char| r.is_ascii_digit()),
    }
}

/// Checks a route class: dotted segments of lower-case letters, digits and `-`, none empty.
pub fn validate_class(class: &str) -> Result<(), Error> {
    let bad = |reason: String| Err(Error::InvalidParameter { reason });
    if class.is_empty() {
        return bad("a route class may not be empty".into());
    }
    if class.len() > MAX_CLASS {
        return bad(format!("a route class has at most {MAX_CLASS} characters"));
    }
    for segment in class.split('.') {
        if segment.is_empty() {
            return bad(format!("route class {class:?} has an empty segment"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return bad(format!(
                "route class {class:?}: {c:?} is not allowed (lower-case letters, digits, '-', '.')"
            ));
        }
    }
    Ok(())
}

/// Where calls whose class no route matches go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultRoute {
    /// To the first owner-privileged opener of the line (highest priority first). A new engine
    /// starts with this.
    FirstOwner,
    /// To this application, if it has the line open as owner.
    Application(String),
    /// Nowhere: unrouted calls are rejected (and logged). This loses calls.
    Reject,
}

/// The written form of a default route, used by configuration files and the network API:
/// `first-owner`, `reject` or `app:NAME`.
impl fmt::Display for DefaultRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FirstOwner => f.write_str("first-owner"),
            Self::Reject => f.write_str("reject"),
            Self::Application(a) => write!(f, "app:{a}"),
        }
    }
}

impl FromStr for DefaultRoute {
    type Err = Error;

    /// Parses `first-owner`, `reject` or `app:NAME`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "first-owner" => Ok(Self::FirstOwner),
            "reject" => Ok(Self::Reject),
            other => match other.strip_prefix("app:") {
                Some(app) if !app.is_empty() => Ok(Self::Application(app.to_owned())),
                _ => Err(Error::InvalidParameter {
                    reason: format!(
                        "default route {other:?}: expected \"first-owner\", \"reject\" or \"app:NAME\""
                    ),
                }),
            },
        }
    }
}

/// One route: calls of `class` go to `application`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The class it matches.
    pub class: String,
    /// The application (by the name it logs on with) that receives the calls.
    pub application: String,
    /// When it was set.
    pub set_at: SystemTime,
}

/// The route table. Pure data; the engine keeps one and stamps the times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTable {
    routes: BTreeMap<String, Route>,
    default: DefaultRoute,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self {
            routes: BTreeMap::new(),
            default: DefaultRoute::FirstOwner,
        }
    }
}

impl RouteTable {
    /// Sets (or replaces) the route for `class`.
    pub fn set(&mut self, class: &str, application: &str, set_at: SystemTime) -> Result<(), Error> {
        validate_class(class)?;
        if application.is_empty() {
            return Err(Error::InvalidParameter {
                reason: "a route needs an application name".into(),
            });
        }
        self.routes.insert(
            class.to_owned(),
            Route {
                class: class.to_owned(),
                application: application.to_owned(),
                set_at,
            },
        );
        Ok(())
    }
    /// Removes the route for exactly `class`; returns it if there was one.
    pub fn clear(&mut self, class: &str) -> Option<Route> {
        self.routes.remove(class)
    }
    /// Replaces the default route.
    pub fn set_default(&mut self, default: DefaultRoute) {
        self.default = default;
    }
    /// The default route.
    pub fn default_route(&self) -> &DefaultRoute {
        &self.default
    }
    /// Every route, in class order.
    pub fn routes(&self) -> Vec<Route> {
        self.routes.values().cloned().collect()
    }
    /// The routes matching `class`, longest first.
    pub fn matching<'a>(&'a self, class: &'a str) -> impl Iterator<Item = &'a Route> + 'a {
        let mut found: Vec<&Route> = self
            .routes
            .values()
            .filter(|r| class_matches(&r.class, class))
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse(r.class.len()));
        found.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_read_back_what_they_write() {
        for d in [
            DefaultRoute::FirstOwner,
            DefaultRoute::Reject,
            DefaultRoute::Application("night-service".into()),
        ] {
            assert_eq!(d.to_string().parse::<DefaultRoute>(), Ok(d));
        }
        for bad in ["", "app:", "everyone", "First-Owner"] {
            assert!(matches!(
                bad.parse::<DefaultRoute>(),
                Err(Error::InvalidParameter { .. })
            ));
        }
    }

    #[test]
    fn classes_from_media_and_number() {
        assert_eq!(call_class(MediaModes::DATA_MODEM, None), "data.modem");
        assert_eq!(call_class(MediaModes::G3_FAX, Some("")), "fax.g3");
        assert_eq!(
            call_class(MediaModes::AUTOMATED_VOICE, Some("+1 (425) 555-0100")),
            "voice.14255550100"
        );
        assert_eq!(
            call_class(MediaModes::DATA_MODEM | MediaModes::G3_FAX, Some("200")),
            "unknown.200"
        );
    }

    #[test]
    fn longest_matching_route_first() {
        let mut t = RouteTable::default();
        let now = SystemTime::UNIX_EPOCH;
        for (class, app) in [
            ("voice", "a"),
            ("voice.5551", "b"),
            ("voice.55", "c"),
            ("data", "d"),
        ] {
            t.set(class, app, now).expect("valid");
        }
        fn apps(t: &RouteTable, class: &str) -> Vec<String> {
            t.matching(class).map(|r| r.application.clone()).collect()
        }
        assert_eq!(apps(&t, "voice.5551234"), ["b", "c", "a"]);
        assert_eq!(apps(&t, "voice.5600"), ["a"]);
        assert_eq!(apps(&t, "data.modem.5551234"), ["d"]);
        assert!(apps(&t, "fax.g3").is_empty());
        assert!(t.clear("voice.5551").is_some());
        assert_eq!(apps(&t, "voice.5551234"), ["c", "a"]);
        assert!(t.clear("voice.5551").is_none());
    }

    #[test]
    fn bad_classes_are_refused_and_change_nothing() {
        let mut t = RouteTable::default();
        for bad in [
            "", "Voice", "voice..1", ".voice", "voice.", "voice 1", "fax/g3",
        ] {
            assert!(
                matches!(
                    t.set(bad, "app", SystemTime::UNIX_EPOCH),
                    Err(Error::InvalidParameter { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(t.set("voice", "", SystemTime::UNIX_EPOCH).is_err());
        assert!(t.routes().is_empty());
    }
}
