//! Registrations and authentication: which lines are in service, and who may act for a line.

use super::*;

impl Switch {
    /// Tells the engine what changed about `line` since it was last told: its service (in service
    /// while some contact is bound), then its devices (the set of bound contacts).
    pub(super) fn line_changed(&mut self, line: usize) {
        let reachable = self.registrar.reachable(line);
        let contacts: Vec<String> = self
            .registrar
            .contacts(line)
            .iter()
            .map(|b| b.contact.clone())
            .collect();
        let l = &mut self.lines[line];
        let service = (l.in_service != reachable).then(|| {
            l.in_service = reachable;
            if reachable {
                LineEvent::InService
            } else {
                LineEvent::OutOfService {
                    reason: format!("line {}: no phone is registered", l.number),
                }
            }
        });
        let devices = (l.devices != contacts).then(|| {
            l.devices = contacts;
            LineEvent::DevicesChanged
        });
        for event in service.into_iter().chain(devices) {
            self.report(ProviderEvent::Line {
                line: LineId(line as u32),
                event,
            });
        }
    }

    /// Checks a request's digest answer for `line`. `Ok(())` when it proves the line's password;
    /// otherwise the response to send has been queued.
    pub(super) fn authenticate(
        &mut self,
        now: Instant,
        tx: TxId,
        line: usize,
        method: &str,
        auth: Option<&DigestResponse>,
    ) -> Result<(), ()> {
        let Some(password) = self.lines[line].password.clone() else {
            self.respond(tx, 403);
            return Err(());
        };
        let stale = match auth {
            Some(a) if a.realm == self.realm && a.username == *self.lines[line].number => {
                match self.nonces.check(&a.nonce, now) {
                    NonceState::Fresh if a.verify(method, &password) => return Ok(()),
                    // A wrong password: refused, not challenged again (a phone with a wrong
                    // password would otherwise loop).
                    NonceState::Fresh => {
                        self.respond(tx, 403);
                        return Err(());
                    }
                    NonceState::Stale => true,
                    NonceState::Forged => false,
                }
            }
            _ => false,
        };
        let nonce = self.nonces.mint(now);
        let challenge = crate::digest::challenge(&self.realm, &nonce, stale);
        self.sip(SipAction::Respond {
            tx,
            status: 401,
            challenge: Some(challenge),
            contacts: Vec::new(),
            min_expires: None,
        });
        Err(())
    }

    pub(super) fn on_register(
        &mut self,
        now: Instant,
        tx: TxId,
        user: &str,
        auth: Option<DigestResponse>,
        request: Register,
    ) {
        let Some(&line) = self.by_number.get(user) else {
            self.respond(tx, 404);
            return;
        };
        if self
            .authenticate(now, tx, line, "REGISTER", auth.as_ref())
            .is_err()
        {
            return;
        }
        match self.registrar.register(now, line, &request) {
            Registered::Ok(contacts) => {
                self.sip(SipAction::Respond {
                    tx,
                    status: 200,
                    challenge: None,
                    contacts,
                    min_expires: None,
                });
                self.line_changed(line);
                if let Some(t) = self.registrar.next_expiry() {
                    self.at(t, Timer::Registrations);
                }
            }
            Registered::TooBrief(min) => self.sip(SipAction::Respond {
                tx,
                status: 423,
                challenge: None,
                contacts: Vec::new(),
                min_expires: Some(min),
            }),
            Registered::Bad(_) => self.respond(tx, 400),
            Registered::TooMany => self.respond(tx, 403),
        }
    }
}
