//! Why a VM is not served: excluded by the operator, not answered this round, no stats, stale
//! stats, figures that contradict each other, or at its max while it needs more. The
//! coordinator logs one line when such a reason starts and one when it ends, never one per
//! round; `--json` shows the reason of every round.
//!
//! A reason is logged only once it has lasted [`LASTING_ROUNDS`] rounds: a VM just started
//! has no stats for its first round or two (its stats period was only just set), and a VM
//! that touches its max for one round is not news. An exclusion is the operator's own doing
//! and is logged at once, as is its end.

use crate::policy::{Action, Hold};

/// Rounds a reason must last before it is logged (its start or its end).
pub const LASTING_ROUNDS: u32 = 3;

/// The reason, if any, that `action` says the VM is not served.
pub fn reason(action: Action) -> Option<Hold> {
    match action {
        Action::Hold(
            h @ (Hold::Excluded | Hold::Unanswered | Hold::NoStats | Hold::Stale | Hold::Inconsistent | Hold::AtMax),
        ) => Some(h),
        _ => None,
    }
}

/// One VM's reason, as last logged and as seen lately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unserved {
    logged: Option<Hold>,
    seen: Option<Hold>,
    rounds: u32,
}

/// A change to log: the reason logged before and the one that holds now (`None`: served).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub from: Option<Hold>,
    pub to: Option<Hold>,
}

impl Unserved {
    /// A VM new to its slot: served until a reason shows.
    pub const NEW: Unserved = Unserved { logged: None, seen: None, rounds: 0 };

    /// Records this round's reason; returns the change to log, if one is due.
    pub fn observe(&mut self, now: Option<Hold>) -> Option<Change> {
        if now != self.seen {
            self.seen = now;
            self.rounds = 0;
        }
        self.rounds = self.rounds.saturating_add(1);
        if self.seen == self.logged {
            return None;
        }
        let operator = |h: Option<Hold>| h == Some(Hold::Excluded);
        let needed = if operator(self.seen) || operator(self.logged) { 1 } else { LASTING_ROUNDS };
        if self.rounds < needed {
            return None;
        }
        let from = std::mem::replace(&mut self.logged, self.seen);
        Some(Change { from, to: self.seen })
    }
}

impl Default for Unserved {
    fn default() -> Self {
        Self::NEW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(u: &mut Unserved, rounds: &[Option<Hold>]) -> Vec<(usize, Change)> {
        rounds.iter().enumerate().filter_map(|(i, r)| u.observe(*r).map(|c| (i, c))).collect()
    }

    #[test]
    fn a_lasting_reason_is_logged_once_when_it_starts_and_once_when_it_ends() {
        let mut u = Unserved::NEW;
        let stale = Some(Hold::Stale);
        let changes = run(&mut u, &[None, stale, stale, stale, stale, stale, stale, None, None, None, None]);
        assert_eq!(
            changes,
            [(3, Change { from: None, to: stale }), (9, Change { from: stale, to: None })],
            "start after 3 rounds of it, end after 3 rounds without"
        );
    }

    #[test]
    fn a_new_vm_without_stats_for_its_first_rounds_is_not_logged() {
        let mut u = Unserved::NEW;
        let none = Some(Hold::NoStats);
        assert!(run(&mut u, &[none, none, None, None, None, None]).is_empty());
    }

    #[test]
    fn a_reason_that_flickers_is_never_logged() {
        let mut u = Unserved::NEW;
        let at_max = Some(Hold::AtMax);
        let rounds: Vec<_> = (0..100).map(|i| if i % 3 == 2 { None } else { at_max }).collect();
        assert!(run(&mut u, &rounds).is_empty());
    }

    #[test]
    fn exclusion_is_logged_at_once_and_so_is_its_end() {
        let mut u = Unserved::NEW;
        let ex = Some(Hold::Excluded);
        let changes = run(&mut u, &[ex, ex, None]);
        assert_eq!(changes, [(0, Change { from: None, to: ex }), (2, Change { from: ex, to: None })]);
    }

    #[test]
    fn one_reason_giving_way_to_another_is_one_line() {
        let mut u = Unserved::NEW;
        let (a, b) = (Some(Hold::NoStats), Some(Hold::Stale));
        let changes = run(&mut u, &[a, a, a, b, b, b]);
        assert_eq!(changes, [(2, Change { from: None, to: a }), (5, Change { from: a, to: b })]);
    }

    #[test]
    fn only_reasons_of_not_being_served_count() {
        assert_eq!(reason(Action::Hold(Hold::AtMax)), Some(Hold::AtMax));
        assert_eq!(reason(Action::Hold(Hold::Unanswered)), Some(Hold::Unanswered));
        assert_eq!(reason(Action::Hold(Hold::Absent)), None, "an empty slot is no VM");
        assert_eq!(reason(Action::Hold(Hold::Holdoff)), None);
        assert_eq!(reason(Action::Hold(Hold::Settling)), None);
        assert_eq!(reason(Action::Shrink { target_kib: 1 }), None);
    }
}
