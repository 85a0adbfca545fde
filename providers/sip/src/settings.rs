//! What a SIP service is configured with: where it listens, its lines (SIP accounts), its trunk, and
//! its timers; and the checks that refuse a bad value before anything starts.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A SIP service's settings. [`SipSettings::check`] refuses a bad value with the key named; the
/// provider checks again when it is built, so nothing starts on a bad value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipSettings {
    /// The provider's name, for logs and the status table.
    pub name: String,
    /// The address SIP is served on, over UDP and TCP both.
    pub listen: SocketAddr,
    /// The lines: one SIP account each.
    pub lines: Vec<SipLine>,
    /// Where numbers that are no line go (another PBX, a carrier, a test UAS), e.g.
    /// `sip:127.0.0.1:5080`. Requests from this address are calls from outside.
    pub trunk: Option<String>,
    /// The digest realm phones authenticate in.
    pub realm: String,
    /// Timers.
    pub timing: SipTiming,
    /// The park orbits (directory numbers a call can be parked in); none: no park.
    pub park_orbits: Vec<String>,
    /// How long a call stays parked before it rings its parker again.
    pub park_timeout: Duration,
    /// Pickup groups by name: the line numbers whose ringing calls each member may pick up.
    pub pickup_groups: BTreeMap<String, Vec<String>>,
}

/// One line: a SIP account a phone registers for, or a device at a fixed address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipLine {
    /// The directory number; also the SIP user name the phone registers and authenticates with.
    pub number: String,
    /// A name for people (the caller name on calls from this line); the configuration gives the
    /// number when it names none.
    pub name: String,
    /// The digest password of the account. A line without one cannot register.
    pub password: Option<String>,
    /// A fixed contact (a device that does not register), e.g. `sip:127.0.0.1:5099`.
    pub contact: Option<String>,
    /// The line's phone answers when asked to (`Call-Info: answer-after=0`), so applications can
    /// answer its calls and make calls from it without anyone lifting the handset.
    pub auto_answer: bool,
}

impl SipLine {
    /// A line a phone registers for with `password`.
    pub fn registered(
        number: impl Into<String>,
        name: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            number: number.into(),
            name: name.into(),
            password: Some(password.into()),
            contact: None,
            auto_answer: false,
        }
    }

    /// A line whose device is always at `contact` and does not register.
    pub fn fixed(
        number: impl Into<String>,
        name: impl Into<String>,
        contact: impl Into<String>,
    ) -> Self {
        Self {
            number: number.into(),
            name: name.into(),
            password: None,
            contact: Some(contact.into()),
            auto_answer: false,
        }
    }

    /// The same line, its phone answering when asked to.
    pub fn auto_answer(mut self) -> Self {
        self.auto_answer = true;
        self
    }
}

/// The SIP service's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipTiming {
    /// A registration asking for less is refused with 423 (RFC 3261 §10.3).
    pub min_expires: Duration,
    /// Registrations asking for more are granted this much.
    pub max_expires: Duration,
    /// What a registration that names no expiry gets (RFC 3261: 3600 s).
    pub default_expires: Duration,
    /// An offered call that no phone answers within this is ended (no answer).
    pub no_answer: Duration,
    /// How long making a call waits for the line's own phone to answer.
    pub phone_answer: Duration,
    /// How often the far ends of a call are asked whether they are still there (OPTIONS in the
    /// dialog); one that does not answer ends the call.
    pub keepalive: Duration,
}

impl Default for SipTiming {
    fn default() -> Self {
        Self {
            min_expires: Duration::from_secs(30),
            max_expires: Duration::from_secs(3600),
            default_expires: Duration::from_secs(3600),
            no_answer: Duration::from_secs(60),
            phone_answer: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
        }
    }
}

impl SipSettings {
    /// Settings listening on `listen` with no lines yet.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            name: "sip".into(),
            listen,
            lines: Vec::new(),
            trunk: None,
            realm: "tapir".into(),
            timing: SipTiming::default(),
            park_orbits: Vec::new(),
            park_timeout: Duration::from_secs(60),
            pickup_groups: BTreeMap::new(),
        }
    }

    /// Sets the park orbits.
    pub fn park_orbits(mut self, orbits: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.park_orbits = orbits.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a pickup group.
    pub fn pickup_group(
        mut self,
        name: impl Into<String>,
        members: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.pickup_groups
            .insert(name.into(), members.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a line.
    pub fn line(mut self, line: SipLine) -> Self {
        self.lines.push(line);
        self
    }

    /// Sets the trunk.
    pub fn trunk(mut self, trunk: impl Into<String>) -> Self {
        self.trunk = Some(trunk.into());
        self
    }

    /// Checks every value; the first bad one is the error, with its key.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.name.is_empty() {
            return Err(SettingsError::new("name", "must not be empty"));
        }
        if self.lines.is_empty() {
            return Err(SettingsError::new(
                "lines",
                "a SIP service needs at least one line",
            ));
        }
        let mut seen = HashSet::new();
        for (i, line) in self.lines.iter().enumerate() {
            let key = |k: &str| format!("lines[{i}].{k}");
            check_user(&line.number).map_err(|r| SettingsError::new(key("number"), r))?;
            if !seen.insert(line.number.as_str()) {
                return Err(SettingsError::new(
                    key("number"),
                    format!("{:?} is the number of an earlier line", line.number),
                ));
            }
            if line.password.as_deref().is_some_and(str::is_empty) {
                return Err(SettingsError::new(key("password"), "must not be empty"));
            }
            if line.password.is_none() && line.contact.is_none() {
                return Err(SettingsError::new(
                    key("password"),
                    "a line needs a password (its phone registers) or a contact (a fixed device)",
                ));
            }
            if let Some(c) = &line.contact {
                SipTarget::parse(c).map_err(|r| SettingsError::new(key("contact"), r))?;
            }
        }
        if let Some(t) = &self.trunk {
            SipTarget::parse(t).map_err(|r| SettingsError::new("trunk", r))?;
        }
        for (i, o) in self.park_orbits.iter().enumerate() {
            let key = format!("park_orbits[{i}]");
            check_user(o).map_err(|r| SettingsError::new(key.clone(), r))?;
            if !seen.insert(o.as_str()) {
                return Err(SettingsError::new(
                    key,
                    format!("{o:?} is already a line's or another orbit's number"),
                ));
            }
        }
        if !self.park_orbits.is_empty() && self.park_timeout.is_zero() {
            return Err(SettingsError::new(
                "park_timeout_secs",
                "must be at least 1",
            ));
        }
        for (name, members) in &self.pickup_groups {
            for (i, m) in members.iter().enumerate() {
                if !self.lines.iter().any(|l| l.number == *m) {
                    return Err(SettingsError::new(
                        format!("pickup_groups.{name}[{i}]"),
                        format!("{m:?} is no line"),
                    ));
                }
            }
        }
        if self.realm.is_empty() || self.realm.contains('"') {
            return Err(SettingsError::new(
                "realm",
                "must be a non-empty name without quotes",
            ));
        }
        let t = &self.timing;
        if t.min_expires.is_zero() || t.min_expires > t.max_expires {
            return Err(SettingsError::new(
                "min_expires_secs",
                "must be at least 1 and at most max_expires_secs",
            ));
        }
        if t.default_expires < t.min_expires || t.default_expires > t.max_expires {
            return Err(SettingsError::new(
                "default_expires_secs",
                "must lie between min_expires_secs and max_expires_secs",
            ));
        }
        for (k, d) in [
            ("no_answer_secs", t.no_answer),
            ("phone_answer_secs", t.phone_answer),
            ("keepalive_secs", t.keepalive),
        ] {
            if d.is_zero() {
                return Err(SettingsError::new(k, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A refused setting: which key, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SettingsError {
    /// The key, relative to the service's table (`lines[2].contact`).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl SettingsError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A user part (line number) may carry what phones dial: digits, `+`, `*`, `#`, and the letters and
/// marks of a SIP user name, nothing that would need escaping in a URI.
fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = user
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '*' | '#' | '.' | '-' | '_')))
    {
        return Err(format!("{c:?} cannot be part of a SIP user name"));
    }
    Ok(())
}

/// Where a request is sent: the URI as configured and the address it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SipTarget {
    /// The URI text, e.g. `sip:127.0.0.1:5080`.
    pub(crate) uri: String,
    /// The user part, if the URI has one.
    pub(crate) user: Option<String>,
    /// The address it names.
    pub(crate) addr: SocketAddr,
    /// Whether requests to it go over TCP (`;transport=tcp`) rather than UDP.
    pub(crate) tcp: bool,
}

impl fmt::Display for SipTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl SipTarget {
    /// Parses `sip:[user@]ip[:port][;transport=udp|tcp]`. Host names are refused: tapir does not
    /// resolve them (yet), and a name that resolves differently later would move the trunk.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let uri = rsipstack::sip::Uri::try_from(text)
            .map_err(|e| format!("{text:?} is not a SIP URI: {e}"))?;
        match uri.scheme {
            Some(rsipstack::sip::Scheme::Sip) => {}
            Some(rsipstack::sip::Scheme::Sips) => {
                return Err(format!(
                    "{text:?}: sips (TLS) is not supported yet; use sip:"
                ));
            }
            _ => return Err(format!("{text:?} is not a sip: URI")),
        }
        let ip = match &uri.host_with_port.host {
            rsipstack::sip::Host::IpAddr(ip) => *ip,
            rsipstack::sip::Host::Domain(d) => {
                return Err(format!(
                    "{text:?}: {d} is a host name; give an IP address (names are not resolved)"
                ));
            }
        };
        let port = uri
            .host_with_port
            .port
            .as_ref()
            .map(|p| p.value())
            .unwrap_or(5060);
        let mut tcp = false;
        for p in &uri.params {
            if let rsipstack::sip::Param::Transport(t) = p {
                match t {
                    rsipstack::sip::Transport::Udp => tcp = false,
                    rsipstack::sip::Transport::Tcp => tcp = true,
                    other => {
                        return Err(format!("{text:?}: transport {other} is not supported"));
                    }
                }
            }
        }
        Ok(Self {
            uri: text.to_owned(),
            user: uri.auth.map(|a| a.user),
            addr: SocketAddr::new(ip, port),
            tcp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> SipSettings {
        SipSettings::new("127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!()))
            .line(SipLine::registered("2001", "Alice", "alice-secret"))
            .line(SipLine::fixed("2009", "Lobby", "sip:127.0.0.1:5099"))
            .trunk("sip:127.0.0.1:5080")
    }

    #[test]
    fn the_issue_example_is_accepted() {
        assert_eq!(office().check(), Ok(()));
    }

    #[test]
    fn each_bad_value_names_its_key() {
        type Change = Box<dyn Fn(&mut SipSettings)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|s| s.lines.push(SipLine::registered("2001", "Again", "x"))),
                "lines[2].number",
            ),
            (
                Box::new(|s| {
                    s.lines[0].password = None;
                }),
                "lines[0].password",
            ),
            (
                Box::new(|s| s.lines[1].contact = Some("not a uri".into())),
                "lines[1].contact",
            ),
            (
                Box::new(|s| s.lines[1].contact = Some("sip:phone.example:5099".into())),
                "lines[1].contact",
            ),
            (
                Box::new(|s| s.trunk = Some("http://127.0.0.1/".into())),
                "trunk",
            ),
            (
                Box::new(|s| s.lines[0].number = "20 01".into()),
                "lines[0].number",
            ),
            (Box::new(|s| s.lines.clear()), "lines"),
            (
                Box::new(|s| s.park_orbits = vec!["701".into(), "2001".into()]),
                "park_orbits[1]",
            ),
            (
                Box::new(|s| {
                    s.pickup_groups
                        .insert("sales".into(), vec!["2001".into(), "2005".into()]);
                }),
                "pickup_groups.sales[1]",
            ),
            (
                Box::new(|s| s.timing.min_expires = Duration::from_secs(7200)),
                "min_expires_secs",
            ),
        ];
        for (change, key) in cases {
            let mut s = office();
            change(&mut s);
            let e = s.check().expect_err(key);
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn a_target_names_its_address_and_transport() {
        let t = SipTarget::parse("sip:trunk@127.0.0.2:5070;transport=tcp").expect("parses");
        assert_eq!(t.addr, "127.0.0.2:5070".parse().expect("addr"));
        assert_eq!(t.user.as_deref(), Some("trunk"));
        assert!(t.tcp);
        let d = SipTarget::parse("sip:127.0.0.1").expect("parses");
        assert_eq!(d.addr.port(), 5060);
        assert!(!d.tcp);
    }
}
