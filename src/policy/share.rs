//! Steps 3 and 4 of a tick: who gives how much, who gets how much. No VM is looked at alone
//! here; every figure comes from `observe`.

use super::observe::{Class, View};
use super::{Action, Decisions, Hold, MAX_DOMAINS, MIN_MOVE_KIB, PolicyConfig, page_down, page_up};

/// Fixed-point scale for spreading a pressure take over donors: extra × ratio stays below
/// 2^54 for extra ≤ 2^40, and a take of at most 2^48 times the scale below 2^62.
const RATIO_SHIFT: u32 = 14;

/// Turns this tick's views (of the VMs present, in slot order) into decisions: releases, then
/// grants funded by the host's budget (`host_budget`: headroom above the reserve) and the
/// releases, after paying any `deficit` (headroom under the reserve). The decisions of absent
/// slots are left as they are.
pub(super) fn decide_moves(config: &PolicyConfig, views: &[View], host_budget: u64, deficit: u64, out: &mut Decisions) {
    out.demand_kib = 0;
    out.granted_kib = 0;
    out.released_kib = 0;
    let mut demand = 0u64;
    let mut urgent_demand = 0u64;
    let mut normal_total = 0u64;
    let mut extra_total = 0u64;
    for v in views {
        match v.class {
            Class::Needy { urgent_kib, need_kib } => {
                demand += need_kib;
                urgent_demand += urgent_kib;
            }
            Class::Donor { normal_kib, pressure_kib } => {
                normal_total += normal_kib;
                extra_total += pressure_kib - normal_kib;
            }
            Class::Hold(_) | Class::Cancel { .. } => {}
        }
    }

    // What the host and normal donations cannot cover, the deficit included, is taken under
    // pressure: the band is waived and page cache is given too, spread over the donors in
    // proportion to what each could give.
    let shortfall = (demand + deficit).saturating_sub(host_budget + normal_total);
    let take = shortfall.min(extra_total);
    let ratio = if extra_total == 0 { 0 } else { (take << RATIO_SHIFT).div_ceil(extra_total) };
    let mut releases = [0u64; MAX_DOMAINS];
    let mut released = 0u64;
    for (release, v) in releases.iter_mut().zip(views) {
        if let Class::Donor { normal_kib, pressure_kib } = v.class {
            let extra = ((pressure_kib - normal_kib) * ratio) >> RATIO_SHIFT;
            let wanted = (normal_kib + extra).min(pressure_kib);
            let target = page_up(v.actual_kib - wanted).min(v.actual_kib);
            let r = v.actual_kib - target;
            *release = if r < MIN_MOVE_KIB { 0 } else { r };
            released += *release;
        }
    }

    // Grants. In normal times every need is met. Short, urgent needs (what keeps a VM from
    // starving, its floor, an alarm) are served first, then the deficit is paid, then the
    // rest: each tier water-filled by weight, no VM above its need or `step_max` a tick.
    // `releases`, `grants` and the fill's arrays are indexed like `views`.
    let mut grants = [0u64; MAX_DOMAINS];
    let budget = host_budget + released;
    let short = budget < demand + deficit;
    if short {
        let mut caps = [0u64; MAX_DOMAINS];
        let mut weights = [1u64; MAX_DOMAINS];
        let mut needy = [0u16; MAX_DOMAINS];
        let mut n = 0;
        for (i, v) in views.iter().enumerate() {
            if let Class::Needy { urgent_kib, .. } = v.class {
                caps[i] = urgent_kib.min(config.shrink_step_max_kib);
                weights[i] = v.weight;
                needy[n] = u16::try_from(i).unwrap_or(0);
                n += 1;
            }
        }
        let needy = &needy[..n];
        let spent = weighted_fill(needy, &caps, &weights, budget.min(urgent_demand), &mut grants);
        let left = (budget - spent).saturating_sub(deficit);
        for i in needy.iter().map(|&i| usize::from(i)) {
            if let Class::Needy { need_kib, .. } = views[i].class {
                caps[i] = need_kib.min(config.shrink_step_max_kib) - grants[i];
            }
        }
        weighted_fill(needy, &caps, &weights, left, &mut grants);
    } else {
        for (grant, v) in grants.iter_mut().zip(views) {
            if let Class::Needy { need_kib, .. } = v.class {
                *grant = need_kib;
            }
        }
    }

    for (i, v) in views.iter().enumerate() {
        let d = &mut out.vms[v.slot];
        d.action = match v.class {
            Class::Hold(why) => Action::Hold(why),
            Class::Cancel { target_kib } => Action::Cancel { target_kib },
            Class::Donor { .. } if releases[i] == 0 => Action::Hold(Hold::Steady),
            Class::Donor { .. } => {
                out.released_kib += releases[i];
                Action::Shrink { target_kib: v.actual_kib - releases[i] }
            }
            Class::Needy { need_kib, .. } => {
                // Rounding to whole pages is not a shortage; rationing is.
                let rationed = need_kib - grants[i];
                let target = page_down(v.actual_kib + grants[i]).min(v.cap_kib);
                let grant = target.saturating_sub(v.actual_kib);
                out.demand_kib += need_kib;
                if grant == 0 || (grant < MIN_MOVE_KIB && target < v.cap_kib) {
                    d.short_kib = if rationed > 0 { need_kib } else { 0 };
                    Action::Hold(if rationed > 0 { Hold::HostShort } else { Hold::Steady })
                } else {
                    d.short_kib = rationed;
                    out.granted_kib += grant;
                    Action::Grow { target_kib: target }
                }
            }
        };
    }
    out.pressure = take > 0;
}

/// Water-fills `budget` over the VMs at the indices `slots` of the arrays: each gets
/// `min(cap, θ × weight)`, θ as large as the budget allows (weighted max-min fairness: no VM
/// gets more per unit of weight than one that is left below its cap). Adds the grants to
/// `grants`, returns what was spent.
///
/// In `decide()` caps are at most `MAX_KIB` (2^40), weights at most `MAX_WEIGHT` (< 2^10, so
/// their sum is below 2^18) and the budget below 2^49: every product below stays under 2^59.
pub(super) fn weighted_fill(
    slots: &[u16],
    caps: &[u64; MAX_DOMAINS],
    weights: &[u64; MAX_DOMAINS],
    budget: u64,
    grants: &mut [u64; MAX_DOMAINS],
) -> u64 {
    // (cap, weight, slot) by cap per unit of weight, smallest first: those are met in full,
    // the rest share. Each entry carries its figures, so the sort reads no other array.
    let mut order = [(0u64, 0u64, 0u16); MAX_DOMAINS];
    let order = &mut order[..slots.len()];
    for (entry, &s) in order.iter_mut().zip(slots) {
        *entry = (caps[usize::from(s)], weights[usize::from(s)], s);
    }
    if order.iter().all(|&(_, weight, _)| weight == order[0].1) {
        // Equal weights (the usual case: every VM at the default weight) order by cap alone:
        // the same order, as one integer per entry (caps are below 2^40, slots below 2^16),
        // which sorts about twice as fast as the pairwise products.
        let mut keys = [0u64; MAX_DOMAINS];
        let keys = &mut keys[..order.len()];
        for (key, &(cap, _, s)) in keys.iter_mut().zip(order.iter()) {
            *key = cap << 16 | u64::from(s);
        }
        keys.sort_unstable();
        for (entry, &key) in order.iter_mut().zip(keys.iter()) {
            let s = (key & 0xffff) as u16;
            *entry = (caps[usize::from(s)], weights[usize::from(s)], s);
        }
    } else {
        order.sort_unstable_by(|&(cap_a, weight_a, a), &(cap_b, weight_b, b)| {
            (cap_a * weight_b).cmp(&(cap_b * weight_a)).then(a.cmp(&b))
        });
    }
    let mut left = budget;
    let mut weight_left: u64 = order.iter().map(|&(_, weight, _)| weight).sum();
    for &(cap, weight, s) in order.iter() {
        // min(cap, left × weight / weight_left), dividing only for a VM not met in full:
        // cap ≤ left × weight / weight_left exactly when cap × weight_left ≤ left × weight.
        let grant = if weight_left == 0 {
            0
        } else if cap * weight_left <= left * weight {
            cap
        } else {
            left * weight / weight_left
        };
        grants[usize::from(s)] += grant;
        left -= grant;
        weight_left -= weight;
    }
    budget - left
}
