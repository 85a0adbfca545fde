//! The park lot: which call waits in which orbit, parked by which line, and until when. A value; the
//! switch asks it and keeps it.

use std::time::Instant;

use tapir_core::params::ParkMode;
use tapir_core::{CallId, Error};

/// A call waiting in an orbit. `T` is what the switch parks (its reference to the party).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parked<T> {
    pub(crate) party: T,
    /// The line that parked it (which it rings again after the time-out).
    pub(crate) parker: usize,
    pub(crate) call_id: CallId,
    /// When it rings its parker again.
    pub(crate) recall_at: Instant,
}

/// The orbits and what waits in them.
#[derive(Debug)]
pub(crate) struct ParkLot<T> {
    orbits: Vec<(String, Option<Parked<T>>)>,
}

impl<T: Clone + PartialEq> ParkLot<T> {
    pub(crate) fn new(orbits: &[String]) -> Self {
        Self {
            orbits: orbits.iter().map(|o| (o.clone(), None)).collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.orbits.is_empty()
    }

    /// The orbit `mode` names, free: directed to one that is taken is `InUse`, to one that does not
    /// exist `InvalidAddress`; non-directed with every orbit taken is `ResourceUnavailable`.
    pub(crate) fn free(&self, mode: &ParkMode) -> Result<usize, Error> {
        match mode {
            ParkMode::Directed(o) => match self.orbits.iter().position(|(n, _)| n == o) {
                None => Err(Error::InvalidAddress {
                    reason: format!("{o} is not a park orbit"),
                }),
                Some(i) if self.orbits[i].1.is_some() => Err(Error::InUse),
                Some(i) => Ok(i),
            },
            ParkMode::NonDirected => self.orbits.iter().position(|(_, p)| p.is_none()).ok_or(
                Error::ResourceUnavailable {
                    what: "a free park orbit",
                },
            ),
        }
    }

    /// Parks in orbit `i` (found free with [`ParkLot::free`]); returns its number.
    pub(crate) fn park(&mut self, i: usize, parked: Parked<T>) -> String {
        self.orbits[i].1 = Some(parked);
        self.orbits[i].0.clone()
    }

    /// The orbit called `number` and what waits there.
    pub(crate) fn find(&self, number: &str) -> Result<(usize, &Parked<T>), Error> {
        let i = self
            .orbits
            .iter()
            .position(|(n, _)| n == number)
            .ok_or_else(|| Error::InvalidAddress {
                reason: format!("{number} is not a park orbit"),
            })?;
        match &self.orbits[i].1 {
            Some(p) => Ok((i, p)),
            None => Err(Error::InvalidAddress {
                reason: format!("nothing is parked in {number}"),
            }),
        }
    }

    /// Takes what waits in orbit `i`.
    pub(crate) fn take(&mut self, i: usize) -> Option<(String, Parked<T>)> {
        let (n, p) = self.orbits.get_mut(i)?;
        p.take().map(|p| (n.clone(), p))
    }

    /// The orbit where `party` waits.
    pub(crate) fn orbit_of(&self, party: &T) -> Option<usize> {
        self.orbits
            .iter()
            .position(|(_, p)| p.as_ref().is_some_and(|p| p.party == *party))
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut Parked<T>> {
        self.orbits.get_mut(i)?.1.as_mut()
    }

    pub(crate) fn number(&self, i: usize) -> &str {
        &self.orbits[i].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(party: u32, at: Instant) -> Parked<u32> {
        Parked {
            party,
            parker: 0,
            call_id: CallId(1),
            recall_at: at,
        }
    }

    #[test]
    fn orbits_fill_up_and_free_again() {
        let now = Instant::now();
        let mut lot = ParkLot::new(&["701".to_owned(), "702".to_owned()]);
        let i = lot.free(&ParkMode::NonDirected).expect("free");
        assert_eq!(lot.park(i, parked(1, now)), "701");
        assert_eq!(
            lot.free(&ParkMode::Directed("701".into())),
            Err(Error::InUse)
        );
        assert!(matches!(
            lot.free(&ParkMode::Directed("799".into())),
            Err(Error::InvalidAddress { .. })
        ));
        let j = lot.free(&ParkMode::NonDirected).expect("702 is free");
        lot.park(j, parked(2, now));
        assert!(matches!(
            lot.free(&ParkMode::NonDirected),
            Err(Error::ResourceUnavailable { .. })
        ));
        assert_eq!(lot.orbit_of(&2), Some(1));
        assert_eq!(lot.find("701").map(|(_, p)| p.party), Ok(1));
        assert_eq!(
            lot.take(0).map(|(n, p)| (n, p.party)),
            Some(("701".into(), 1))
        );
        assert!(matches!(lot.find("701"), Err(Error::InvalidAddress { .. })));
        assert_eq!(lot.free(&ParkMode::NonDirected), Ok(0));
    }
}
