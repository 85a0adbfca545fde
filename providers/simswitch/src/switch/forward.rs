//! Forwarding: the rules set on an extension, and where a call to it goes instead.

use super::*;

impl State {
    /// The destination of the first forwarding rule of extension `line` whose condition matches.
    pub(super) fn forward_rule(
        &self,
        line: usize,
        condition: impl Fn(&ForwardCondition) -> bool,
    ) -> Option<String> {
        self.forwarding
            .get(&line)?
            .rules
            .iter()
            .find(|(c, _)| condition(c))
            .map(|(_, d)| d.digits())
    }

    /// Where a call dialled to extension `line` really goes: do-not-disturb refuses it; forwarding
    /// unconditionally, or on busy when the extension cannot take the call, sends it on (one hop).
    pub(crate) fn forwarded(&self, line: usize) -> Forwarded {
        let Some(f) = self.forwarding.get(&line) else {
            return Forwarded::No;
        };
        if f.do_not_disturb {
            return Forwarded::DoNotDisturb;
        }
        if let Some(to) = self.forward_rule(line, |c| *c == ForwardCondition::Unconditional) {
            return Forwarded::To(to, CallReason::ForwardUnconditional);
        }
        if !self.can_take_call(line)
            && let Some(to) = self.forward_rule(line, |c| *c == ForwardCondition::Busy)
        {
            return Forwarded::To(to, CallReason::ForwardBusy);
        }
        Forwarded::No
    }

    /// Replaces extension `line`'s forwarding (an empty one cancels it). Destinations must be numbers
    /// the switch knows, other than the extension itself.
    pub(crate) fn set_forwarding(
        &mut self,
        line: usize,
        forwarding: &Forwarding,
    ) -> Result<(), Error> {
        for (condition, to) in &forwarding.rules {
            let number = to.digits();
            let known = self.extension_index(&number).is_some_and(|l| l != line)
                || self.far_ends.contains_key(&number);
            if !known {
                return Err(Error::InvalidAddress {
                    reason: format!("cannot forward to {number}"),
                });
            }
            if let ForwardCondition::NoAnswer { rings } = condition
                && *rings == 0
            {
                return Err(Error::InvalidParameter {
                    reason: "forwarding on no answer needs at least one ring".into(),
                });
            }
        }
        if forwarding.rules.is_empty() && !forwarding.do_not_disturb {
            self.forwarding.remove(&line);
        } else {
            self.forwarding.insert(line, forwarding.clone());
        }
        self.out.line(
            LineId(line as u32),
            LineEvent::ForwardingChanged {
                address: AddressId(0),
            },
        );
        Ok(())
    }
}
