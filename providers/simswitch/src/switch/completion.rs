//! Call completion: a request to be called back when a busy extension is free.

use super::*;

impl State {
    /// Records a call-completion request for a busy or unanswered internal call; the call goes idle.
    pub(crate) fn complete_call(
        &mut self,
        id: CallLegId,
        mode: tapir_core::params::CompletionMode,
    ) -> Result<u32, Error> {
        use tapir_core::params::CompletionMode;
        let state = self.state_of(id)?;
        if !matches!(state, CallStateKind::Busy | CallStateKind::Ringback) {
            return Err(Error::InvalidCallState { state });
        }
        if !matches!(mode, CompletionMode::CampOn | CompletionMode::Callback) {
            return Err(Error::InvalidParameter {
                reason: format!("the switch cannot complete a call by {mode:?}"),
            });
        }
        let leg = self.leg(id)?;
        let requester = leg.line;
        let target = self
            .extension_index(&leg.dialed)
            .ok_or_else(|| Error::InvalidAddress {
                reason: "only calls to extensions can be completed".into(),
            })?;
        let completion = self.next_completion;
        self.next_completion += 1;
        self.completions.push(Completion {
            id: completion,
            requester,
            target,
            armed: state == CallStateKind::Busy,
        });
        self.drop_leg(id, DisconnectReason::Normal)?;
        Ok(completion)
    }

    pub(crate) fn cancel_completion(&mut self, line: usize, completion: u32) -> Result<(), Error> {
        let before = self.completions.len();
        self.completions
            .retain(|c| !(c.id == completion && c.requester == line));
        if self.completions.len() == before {
            return Err(Error::InvalidParameter {
                reason: format!("no call-completion request {completion} from this extension"),
            });
        }
        Ok(())
    }

    /// A call on `line` ended: completions waiting for it may call back. Runs just after the change that
    /// freed the line, so that change completes first.
    pub(super) fn line_freed(&mut self, line: usize) {
        if !self.completions.iter().any(|c| c.target == line && c.armed) {
            return;
        }
        self.later(Duration::ZERO, Due::Completions { line });
    }

    pub(super) fn run_completions(&mut self, target: usize) {
        if !self.can_take_call(target) {
            return;
        }
        let Some(i) = self
            .completions
            .iter()
            .position(|c| c.target == target && c.armed && self.can_take_call(c.requester))
        else {
            return;
        };
        let c = self.completions.remove(i);
        let info = CallInfo {
            call_id: self.new_call_id(),
            origin: CallOrigin::Internal,
            reason: CallReason::CallCompletion,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: self.party(c.target),
            called: self.party(c.requester),
            ..CallInfo::default()
        };
        let leg = self.offer(c.requester, info, Peer::None);
        if let Some(l) = self.legs.get_mut(&leg) {
            l.relation = Relation::CallBack(c.target);
        }
    }
}
