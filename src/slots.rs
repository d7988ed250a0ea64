//! Which VM lives in which slot of the fixed arrays. A VM keeps its slot (and so its policy
//! history) for as long as it is seen each round; a slot not seen in a round is freed, and a
//! VM new to a slot is reported so its history can be forgotten.

use crate::policy::MAX_DOMAINS;

/// Maps backend identities (libvirt UUIDs, QMP socket paths) to slots, without allocating.
pub struct SlotTable<K> {
    keys: [Option<K>; MAX_DOMAINS],
    seen: [bool; MAX_DOMAINS],
}

/// The result of claiming a slot for a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub slot: usize,
    /// The VM was not in this slot last round.
    pub new: bool,
}

impl<K: Copy + Eq> SlotTable<K> {
    pub fn new() -> Self {
        SlotTable { keys: [None; MAX_DOMAINS], seen: [false; MAX_DOMAINS] }
    }

    /// Starts a round: every slot is unseen until claimed again.
    pub fn begin_round(&mut self) {
        self.seen = [false; MAX_DOMAINS];
    }

    /// The slot of `key`, taking a free one for a new key; `None` when all are taken.
    pub fn claim(&mut self, key: K) -> Option<Claim> {
        let found = self.keys.iter().position(|k| *k == Some(key));
        let claim = match found {
            Some(slot) => Claim { slot, new: false },
            None => {
                let slot = self.keys.iter().position(Option::is_none)?;
                self.keys[slot] = Some(key);
                Claim { slot, new: true }
            }
        };
        self.seen[claim.slot] = true;
        Some(claim)
    }

    /// Ends a round: frees every occupied slot not claimed since `begin_round`, calling
    /// `gone(slot, key)` for each.
    pub fn end_round(&mut self, mut gone: impl FnMut(usize, K)) {
        for (slot, (key, seen)) in self.keys.iter_mut().zip(&self.seen).enumerate() {
            if let (Some(k), false) = (*key, *seen) {
                *key = None;
                gone(slot, k);
            }
        }
    }
}

impl<K: Copy + Eq> Default for SlotTable<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_keeps_its_slot_while_seen_and_loses_it_when_not() {
        let mut t = SlotTable::new();
        t.begin_round();
        assert_eq!(t.claim('a'), Some(Claim { slot: 0, new: true }));
        assert_eq!(t.claim('b'), Some(Claim { slot: 1, new: true }));
        t.end_round(|_, _| panic!("nothing is gone"));

        t.begin_round();
        assert_eq!(t.claim('b'), Some(Claim { slot: 1, new: false }));
        let mut gone = vec![];
        t.end_round(|slot, k| gone.push((slot, k)));
        assert_eq!(gone, vec![(0, 'a')]);

        // A new VM takes the freed slot and is reported new.
        t.begin_round();
        assert_eq!(t.claim('c'), Some(Claim { slot: 0, new: true }));
        assert_eq!(t.claim('b'), Some(Claim { slot: 1, new: false }));
    }

    #[test]
    fn claims_beyond_capacity_are_refused() {
        let mut t = SlotTable::new();
        t.begin_round();
        for k in 0..MAX_DOMAINS {
            assert!(t.claim(k).is_some());
        }
        assert_eq!(t.claim(MAX_DOMAINS), None);
        assert_eq!(t.claim(7), Some(Claim { slot: 7, new: false }));
    }
}
