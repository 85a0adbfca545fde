//! The engine's lines: each line device's capabilities and the count of its calls by class, and the
//! table that finds a line by its engine ID or by its provider's own.

use std::sync::{Arc, Mutex};

use tapir_core::caps::{AddressCaps, LineCaps};
use tapir_core::gate::{AddressUsage, CallOperation};
use tapir_core::state::CallStateKind;
use tapir_core::{AddressId, Error, LineId, ProviderId};

use crate::sync::lock;

/// A line device as listed to an application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// The engine-wide line ID, to pass to [`Session::open_line`](crate::Session::open_line).
    pub id: LineId,
    /// The provider serving the line.
    pub provider: ProviderId,
    /// The provider's name.
    pub provider_name: String,
    /// The line's capabilities.
    pub caps: LineCaps,
}

/// One line device as the engine sees it.
pub(crate) struct LineSlot {
    pub(crate) id: LineId,
    pub(crate) provider: ProviderId,
    /// The provider's own ID for the line.
    pub(crate) local: LineId,
    pub(crate) caps: LineCaps,
    /// Per address: its calls by class, as the gate counts them for its limits.
    usage: Vec<Mutex<AddressUsage>>,
}

impl LineSlot {
    /// Engine line `id`, the provider's line `local`, with the capabilities it reported. Hand-off is
    /// the engine's own operation, so every address gets it.
    pub(crate) fn new(id: LineId, provider: ProviderId, local: LineId, mut caps: LineCaps) -> Self {
        for a in &mut caps.addresses {
            a.call_features = a.call_features.with(CallOperation::Handoff);
        }
        Self {
            id,
            provider,
            local,
            usage: caps
                .addresses
                .iter()
                .map(|_| Mutex::new(AddressUsage::default()))
                .collect(),
            caps,
        }
    }

    /// The capabilities of `address`; `InvalidAddressId` for an address the line does not have.
    pub(crate) fn address(&self, address: AddressId) -> Result<&AddressCaps, Error> {
        self.caps
            .addresses
            .get(address.0 as usize)
            .ok_or(Error::InvalidAddressId)
    }

    /// The calls of `address` by class now.
    pub(crate) fn usage(&self, address: AddressId) -> AddressUsage {
        self.usage
            .get(address.0 as usize)
            .map(|u| *lock(u))
            .unwrap_or_default()
    }

    /// Counts one call of `address` into (`delta` 1) or out of (-1) the class of `state`.
    pub(crate) fn count(&self, address: AddressId, state: CallStateKind, delta: i32) {
        if let Some(u) = self.usage.get(address.0 as usize) {
            lock(u).count(state, delta);
        }
    }

    /// Moves one call of `address` from state `from` to `to` (one lock, not two).
    pub(crate) fn shift(&self, address: AddressId, from: CallStateKind, to: CallStateKind) {
        if let Some(u) = self.usage.get(address.0 as usize) {
            let mut u = lock(u);
            u.count(from, -1);
            u.count(to, 1);
        }
    }
}

/// Every line of every provider, numbered engine-wide in provider order.
#[derive(Default)]
pub(crate) struct Lines {
    all: Vec<Arc<LineSlot>>,
    /// Per provider: (first engine line ID, number of lines).
    ranges: Vec<(u32, u32)>,
}

impl Lines {
    /// Adds provider `provider`'s lines (`caps` in its own order); call once per provider, in
    /// provider order, with nothing for a provider that did not start.
    pub(crate) fn add_provider(&mut self, provider: ProviderId, caps: Vec<LineCaps>) {
        let first = self.all.len() as u32;
        self.ranges.push((first, caps.len() as u32));
        for (local, caps) in caps.into_iter().enumerate() {
            let id = LineId(self.all.len() as u32);
            self.all.push(Arc::new(LineSlot::new(
                id,
                provider,
                LineId(local as u32),
                caps,
            )));
        }
    }

    /// Every line, in engine order.
    pub(crate) fn all(&self) -> &[Arc<LineSlot>] {
        &self.all
    }

    /// Engine line `id`.
    pub(crate) fn get(&self, id: LineId) -> Option<&Arc<LineSlot>> {
        self.all.get(id.0 as usize)
    }

    /// The line `provider` calls `local`.
    pub(crate) fn of_provider(
        &self,
        provider: ProviderId,
        local: LineId,
    ) -> Option<&Arc<LineSlot>> {
        let (first, count) = *self.ranges.get(provider.0 as usize)?;
        if local.0 >= count {
            return None;
        }
        self.all.get((first + local.0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use tapir_core::caps::AddressCaps;

    use super::*;

    fn caps(addresses: usize) -> LineCaps {
        LineCaps {
            name: "a line".into(),
            addresses: (0..addresses)
                .map(|i| AddressCaps::basic(format!("10{i}")))
                .collect(),
            media_modes: tapir_core::media::MediaModes::INTERACTIVE_VOICE,
            dial: Default::default(),
            answer_mode: Default::default(),
        }
    }

    #[test]
    fn lines_are_found_by_engine_id_and_by_their_providers_own() {
        let mut lines = Lines::default();
        lines.add_provider(ProviderId(0), vec![caps(1), caps(1)]);
        lines.add_provider(ProviderId(1), Vec::new());
        lines.add_provider(ProviderId(2), vec![caps(2)]);
        let l = lines.of_provider(ProviderId(2), LineId(0)).expect("line");
        assert_eq!((l.id, l.local), (LineId(2), LineId(0)));
        assert!(lines.of_provider(ProviderId(2), LineId(1)).is_none());
        assert!(lines.of_provider(ProviderId(1), LineId(0)).is_none());
        assert!(lines.of_provider(ProviderId(3), LineId(0)).is_none());
        assert_eq!(
            lines.get(LineId(1)).map(|l| l.provider),
            Some(ProviderId(0))
        );
    }

    #[test]
    fn every_address_has_hand_off_and_an_unknown_address_is_refused() {
        let line = LineSlot::new(LineId(0), ProviderId(0), LineId(0), caps(2));
        for a in 0..2 {
            let caps = line.address(AddressId(a)).expect("address");
            assert!(caps.call_features.contains(CallOperation::Handoff));
        }
        assert!(matches!(
            line.address(AddressId(2)),
            Err(Error::InvalidAddressId)
        ));
    }

    #[test]
    fn usage_follows_a_call_from_state_to_state() {
        let line = LineSlot::new(LineId(0), ProviderId(0), LineId(0), caps(1));
        let a = AddressId(0);
        line.count(a, CallStateKind::Connected, 1);
        assert_eq!(line.usage(a).active, 1);
        line.shift(a, CallStateKind::Connected, CallStateKind::OnHold);
        let u = line.usage(a);
        assert_eq!((u.active, u.on_hold), (0, 1));
        line.count(a, CallStateKind::OnHold, -1);
        assert_eq!(line.usage(a), AddressUsage::default());
    }
}
