//! The registrar: which contacts each line's phones can be reached at, and until when (RFC 3261
//! §10.3). A value changed through `&mut self` with the time fed in; it never reads a clock and never
//! sends anything, so every rule is a plain unit test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::settings::SipTiming;

/// The most contacts one line may have at once; a registration beyond it is refused.
pub(crate) const MAX_CONTACTS: usize = 8;

/// One place a line's phone can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The contact URI as the phone registered it: the Request-URI of requests sent to it.
    pub(crate) contact: String,
    /// Where requests for it are sent: the address the registration came from (so a phone behind
    /// a NAT is reached through it), or a fixed contact's own address.
    pub(crate) addr: SocketAddr,
    /// Whether it registered over TCP.
    pub(crate) tcp: bool,
    call_id: String,
    cseq: u32,
    /// When the binding lapses; `None` for a fixed contact, which never does.
    expires: Option<Instant>,
}

impl Binding {
    /// A contact configured for a device that does not register.
    pub(crate) fn fixed(contact: String, addr: SocketAddr, tcp: bool) -> Self {
        Self {
            contact,
            addr,
            tcp,
            call_id: String::new(),
            cseq: 0,
            expires: None,
        }
    }

    /// Whole seconds it has left at `now` (at least 1 while it lasts); `None` for a fixed contact.
    pub(crate) fn left(&self, now: Instant) -> Option<u32> {
        self.expires.map(|e| {
            let secs = e.saturating_duration_since(now).as_secs().max(1);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }
}

/// The contacts of a REGISTER request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Contacts {
    /// No Contact header: the phone asks what is bound.
    Query,
    /// `Contact: *`: remove every binding (only valid with `Expires: 0`).
    All,
    /// These contacts, each with its own `expires` parameter if it had one.
    List(Vec<(String, Option<u32>)>),
}

/// A REGISTER request, as far as the registrar reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Register {
    pub(crate) call_id: String,
    pub(crate) cseq: u32,
    pub(crate) contacts: Contacts,
    /// The `Expires` header.
    pub(crate) expires: Option<u32>,
    /// Where it came from.
    pub(crate) source: SocketAddr,
    pub(crate) tcp: bool,
}

/// What the registrar answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Registered {
    /// 200: the line's bindings now, each with the seconds it has left.
    Ok(Vec<(String, u32)>),
    /// 423 Interval Too Brief, with the shortest interval accepted.
    TooBrief(u32),
    /// 400 with the reason: nothing changed.
    Bad(&'static str),
    /// 403: the line has as many contacts as it may.
    TooMany,
}

/// The bindings of every line.
#[derive(Debug)]
pub(crate) struct Registrar {
    lines: Vec<Vec<Binding>>,
    timing: SipTiming,
}

impl Registrar {
    /// A registrar for `lines` lines, each starting with its fixed contacts.
    pub(crate) fn new(fixed: Vec<Option<Binding>>, timing: SipTiming) -> Self {
        Self {
            lines: fixed.into_iter().map(|b| b.into_iter().collect()).collect(),
            timing,
        }
    }

    /// The bindings of `line`.
    pub(crate) fn contacts(&self, line: usize) -> &[Binding] {
        self.lines.get(line).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether `line` can be reached at all.
    pub(crate) fn reachable(&self, line: usize) -> bool {
        !self.contacts(line).is_empty()
    }

    /// Applies a REGISTER for `line` (already authenticated). All or nothing: a request with one bad
    /// contact changes no binding.
    pub(crate) fn register(&mut self, now: Instant, line: usize, req: &Register) -> Registered {
        let Some(bindings) = self.lines.get(line) else {
            return Registered::Bad("no such line");
        };
        let mut next = bindings.clone();
        match &req.contacts {
            Contacts::Query => {}
            Contacts::All => {
                if req.expires != Some(0) {
                    return Registered::Bad("Contact: * needs Expires: 0");
                }
                // A stale wildcard (an older request of the same Call-ID) changes nothing.
                if next
                    .iter()
                    .any(|b| b.call_id == req.call_id && b.cseq >= req.cseq)
                {
                    return Registered::Ok(Self::report(&next, now));
                }
                next.retain(|b| b.expires.is_none());
            }
            Contacts::List(list) => {
                for (contact, own) in list {
                    let secs = own
                        .or(req.expires)
                        .unwrap_or(self.timing.default_expires.as_secs() as u32);
                    let existing = next.iter().position(|b| b.contact == *contact);
                    if let Some(i) = existing {
                        let b = &next[i];
                        if b.expires.is_none() {
                            return Registered::Bad("that contact is the line's fixed contact");
                        }
                        // RFC 3261 §10.3 step 7: an out-of-order request for the same binding is
                        // ignored.
                        if b.call_id == req.call_id && b.cseq >= req.cseq {
                            continue;
                        }
                    }
                    if secs == 0 {
                        if let Some(i) = existing {
                            next.remove(i);
                        }
                        continue;
                    }
                    if u64::from(secs) < self.timing.min_expires.as_secs() {
                        return Registered::TooBrief(self.timing.min_expires.as_secs() as u32);
                    }
                    let granted = Duration::from_secs(u64::from(secs)).min(self.timing.max_expires);
                    let binding = Binding {
                        contact: contact.clone(),
                        addr: req.source,
                        tcp: req.tcp,
                        call_id: req.call_id.clone(),
                        cseq: req.cseq,
                        expires: Some(now + granted),
                    };
                    match existing {
                        Some(i) => next[i] = binding,
                        None => next.push(binding),
                    }
                }
                if next.len() > MAX_CONTACTS {
                    return Registered::TooMany;
                }
            }
        }
        let out = Self::report(&next, now);
        self.lines[line] = next;
        Registered::Ok(out)
    }

    fn report(bindings: &[Binding], now: Instant) -> Vec<(String, u32)> {
        bindings
            .iter()
            .filter_map(|b| Some((b.contact.clone(), b.left(now)?)))
            .collect()
    }

    /// Removes every binding that lapsed by `now`; returns the lines that lost one.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<usize> {
        let mut lost = Vec::new();
        for (i, bindings) in self.lines.iter_mut().enumerate() {
            let had = bindings.len();
            bindings.retain(|b| b.expires.is_none_or(|e| e > now));
            if bindings.len() != had {
                lost.push(i);
            }
        }
        lost
    }

    /// When the next binding lapses.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.lines.iter().flatten().filter_map(|b| b.expires).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5070))
    }

    fn reg(cseq: u32, contacts: Contacts, expires: Option<u32>) -> Register {
        Register {
            call_id: "c1".into(),
            cseq,
            contacts,
            expires,
            source: addr(),
            tcp: false,
        }
    }

    fn one(contact: &str, expires: Option<u32>) -> Contacts {
        Contacts::List(vec![(contact.into(), expires)])
    }

    fn registrar() -> Registrar {
        Registrar::new(vec![None, None], SipTiming::default())
    }

    #[test]
    fn a_binding_lives_until_it_expires_and_a_refresh_extends_it() {
        let t0 = Instant::now();
        let mut r = registrar();
        let ok = r.register(
            t0,
            0,
            &reg(1, one("sip:2001@127.0.0.1:5070", None), Some(60)),
        );
        assert_eq!(
            ok,
            Registered::Ok(vec![("sip:2001@127.0.0.1:5070".into(), 60)])
        );
        assert!(r.reachable(0));
        assert!(!r.reachable(1));
        assert_eq!(r.next_expiry(), Some(t0 + Duration::from_secs(60)));
        // Refreshed at 50 s for another 60.
        let t1 = t0 + Duration::from_secs(50);
        r.register(
            t1,
            0,
            &reg(2, one("sip:2001@127.0.0.1:5070", None), Some(60)),
        );
        assert!(r.expire(t0 + Duration::from_secs(61)).is_empty());
        assert_eq!(r.expire(t1 + Duration::from_secs(60)), vec![0]);
        assert!(!r.reachable(0));
    }

    #[test]
    fn a_line_that_loses_one_of_two_contacts_is_named_by_expire() {
        let t0 = Instant::now();
        let mut r = registrar();
        r.register(t0, 0, &reg(1, one("sip:a@h", Some(60)), None));
        r.register(t0, 0, &reg(2, one("sip:b@h", Some(120)), None));
        assert_eq!(
            r.contacts(0)[0].left(t0 + Duration::from_secs(15)),
            Some(45)
        );
        assert_eq!(r.expire(t0 + Duration::from_secs(61)), vec![0]);
        assert_eq!(r.contacts(0).len(), 1);
        assert!(r.reachable(0), "the other phone still reaches the line");
    }

    #[test]
    fn expires_zero_and_the_wildcard_unregister() {
        let t0 = Instant::now();
        let mut r = registrar();
        r.register(t0, 0, &reg(1, one("sip:a@h", Some(300)), None));
        r.register(t0, 0, &reg(2, one("sip:b@h", Some(300)), None));
        assert_eq!(r.contacts(0).len(), 2);
        r.register(t0, 0, &reg(3, one("sip:a@h", Some(0)), None));
        assert_eq!(r.contacts(0).len(), 1);
        assert_eq!(
            r.register(t0, 0, &reg(4, Contacts::All, Some(60))),
            Registered::Bad("Contact: * needs Expires: 0")
        );
        assert_eq!(r.contacts(0).len(), 1, "a refused wildcard changes nothing");
        assert_eq!(
            r.register(t0, 0, &reg(5, Contacts::All, Some(0))),
            Registered::Ok(vec![])
        );
        assert!(!r.reachable(0));
    }

    #[test]
    fn too_brief_too_long_and_out_of_order() {
        let t0 = Instant::now();
        let mut r = registrar();
        assert_eq!(
            r.register(t0, 0, &reg(1, one("sip:a@h", Some(5)), None)),
            Registered::TooBrief(30)
        );
        assert!(!r.reachable(0), "a refused registration binds nothing");
        assert_eq!(
            r.register(t0, 0, &reg(2, one("sip:a@h", Some(100_000)), None)),
            Registered::Ok(vec![("sip:a@h".into(), 3600)])
        );
        // An older request of the same Call-ID arriving late is ignored.
        r.register(t0, 0, &reg(1, one("sip:a@h", Some(0)), None));
        assert!(r.reachable(0));
    }

    #[test]
    fn a_fixed_contact_never_lapses_and_is_not_reported() {
        let t0 = Instant::now();
        let fixed = Binding::fixed("sip:127.0.0.1:5099".into(), addr(), false);
        let mut r = Registrar::new(vec![Some(fixed)], SipTiming::default());
        assert!(r.expire(t0 + Duration::from_secs(1_000_000)).is_empty());
        assert!(r.reachable(0));
        assert_eq!(
            r.register(t0, 0, &reg(1, Contacts::All, Some(0))),
            Registered::Ok(vec![])
        );
        assert!(
            r.reachable(0),
            "the wildcard removes registrations, not the fixed contact"
        );
    }

    #[test]
    fn a_line_has_at_most_so_many_contacts() {
        let t0 = Instant::now();
        let mut r = registrar();
        let many: Vec<(String, Option<u32>)> = (0..=MAX_CONTACTS)
            .map(|i| (format!("sip:{i}@h"), None))
            .collect();
        assert_eq!(
            r.register(t0, 0, &reg(1, Contacts::List(many), Some(60))),
            Registered::TooMany
        );
        assert!(!r.reachable(0));
    }
}
