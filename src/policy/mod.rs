//! The pure balancing policy: one call per tick, from a snapshot of every VM's balloon
//! statistics and the host's memory to a new balloon target per VM.
//!
//! `decide()` does no I/O, reads no clock, allocates nothing and cannot panic or overflow:
//! every input is an arbitrary `u64` as far as it is concerned. Figures are clamped at the
//! boundary ([`MAX_KIB`], [`PolicyConfig::sanitized`]), so the arithmetic inside is plain,
//! exact `u64`. All sizes are KiB.
//!
//! # The model
//! - **Free memory is reclaimable memory**: the guest's MemAvailable (free plus page cache it
//!   can drop) where it reports it, MemFree otherwise, or MemFree only with
//!   [`FreeFigure::Unused`]. A guest whose page cache fills its RAM is not hungry.
//! - **The host pays when the guest touches.** Memory a guest was given and has not touched
//!   is not backed by host RAM yet: MemAvailable on the host does not show it, but the host
//!   pays it later. Each VM's *debt* is its balloon size minus what the host backs for it
//!   (the QEMU process's RSS minus QEMU's own overhead, learned per VM). The host's
//!   *headroom* is its MemAvailable minus every VM's debt: it does not change when guests
//!   consume (the host's MemAvailable and the debt fall together), only when memory is given
//!   or taken back. Growth is budgeted against the headroom above the reserve, so even if
//!   every guest touched all it has, the host stays above `host_min_free`: the look-ahead is
//!   built in. A headroom under the reserve (the host's own processes grew, or the daemon
//!   started on an overcommitted host) is a deficit, paid back from the guests' excess.
//!
//! # Per tick
//! 1. **Observe** (`observe.rs`). Is the sample fresh, stale, missing or impossible? From fresh
//!    samples learn the consumption rate (growth of used memory, MemTotal minus the free
//!    figure, per second over the last two sample intervals; a rise is capped at twice the
//!    old rate plus 32 MiB/s so one transient sample cannot inflate it, a fall decays by a
//!    quarter per sample), the offset between balloon size and MemTotal (while the balloon
//!    rests: it corrects a sample taken before the last move landed), QEMU's overhead (so the
//!    debt can be known) and the guest's alarms: swap and major faults stop any taking for a
//!    while; an OOM kill or a burst of allocation stalls (Linux 6.12 counters) grows the
//!    guest at once and raises what it must keep for a minute. It follows our own balloon
//!    moves: one in flight is waited for, one that stopped short is cancelled and backed off;
//!    a move that is not ours is waited for (up to 5 rounds) before anything is taken. A grant
//!    is checked once it landed: its memory must show as free memory, or as memory the host
//!    now backs, or as consumption at the rate seen before it; a guest that shows neither
//!    (it lies about being short) gets no further grant until it does.
//! 2. **Classify.** `keep = vm_min_unused + rate × lead_ticks × interval` is what a VM must keep
//!    free. A VM with less, or one swapping in with little to spare, or one that raised an
//!    alarm, or one below its configured minimum, is *needy*: it should have `keep + band/2`.
//!    Its need up to `vm_min_unused` is *urgent*. A VM with more is a potential *donor*: of
//!    `min(excess × fraction, step_max, actual − floor)`, in normal times only from MemFree
//!    (never its page cache) and only beyond the band; under pressure also from its cache.
//! 3. **Budget.** Growth is funded by the headroom above the reserve plus this tick's
//!    releases. When that cannot cover the needs and any deficit, the band is waived and
//!    donors give more, page cache included (within fraction and step cap): memory moves VM to
//!    VM. Still short, the needy share what exists: urgent needs first, then the rest, each
//!    tier by weighted max-min fairness (equal grant per unit of weight, no VM above its need
//!    or above `step_max` in one tick).
//! 4. **Act.** Emit grow/shrink/cancel targets, rounded to whole pages. What an action
//!    changes in a VM's history is recorded only when the coordinator reports it applied
//!    ([`History::applied`]).

pub mod invariants;

mod observe;
mod share;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use observe::{View, observe};

use crate::units::mib_to_kib;

/// Fixed capacity of every per-VM array: snapshot, history and decisions.
pub const MAX_DOMAINS: usize = 256;

/// The balloon moves in guest pages: QEMU lands a target on a multiple of 4 KiB
/// (VIRTIO_BALLOON_PFN_SHIFT = 12 in the virtio spec), so targets are rounded to it and a
/// balloon within one page of our target has reached it.
pub const PAGE_KIB: u64 = 4;

/// Every KiB figure is clamped to this (1 PiB) when it enters `decide()`: with at most 256
/// VMs, sums stay below 2^48 and products with a percentage or a weight (at most 1000) below
/// 2^58, so plain `u64` arithmetic is exact.
pub const MAX_KIB: u64 = 1 << 40;

/// Largest weight a VM can be given (`VmLimits::weight`).
pub const MAX_WEIGHT: u32 = 1000;

/// Smallest balloon change worth making: below this a move costs the guest more than it
/// returns. (A cancel of a stalled shrink is exempt: it only stops the balloon.)
pub const MIN_MOVE_KIB: u64 = 1024;

/// Which guest figure counts as a VM's free memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeFigure {
    /// MemAvailable (free plus reclaimable page cache; libvirt `usable`, QMP
    /// `stat-available-memory`, Linux 4.16 and later), MemFree where the guest does not report
    /// it. A guest full of page cache is not hungry.
    Available,
    /// MemFree only, the course's rule: page cache counts as used.
    Unused,
}

impl FreeFigure {
    pub fn as_str(self) -> &'static str {
        match self {
            FreeFigure::Available => "available",
            FreeFigure::Unused => "unused",
        }
    }
}

/// Policy parameters. All sizes in KiB, validated by [`PolicyConfig::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Tick interval; also the guest stats period the backends set.
    pub interval_s: u64,
    /// A VM whose free memory is below this is starving.
    pub vm_min_unused_kib: u64,
    /// The host never gives memory that would leave it at or below this.
    pub host_min_free_kib: u64,
    /// Hysteresis band: in normal times a VM gives memory only when its excess over what it
    /// must keep is larger than this. A grown VM lands in the middle of the band.
    pub shrink_band_kib: u64,
    /// At most this percentage of a VM's excess is taken per tick (1..=100).
    pub shrink_fraction_pct: u64,
    /// At most this much is taken from one VM per tick.
    pub shrink_step_max_kib: u64,
    /// No VM is shrunk below this size.
    pub vm_min_size_kib: u64,
    /// How many intervals of consumption a growing VM is given in advance: stats are up to one
    /// period old and a deflate takes time to land, so at least 2.
    pub lead_ticks: u64,
    /// A VM's stats are stale after their timestamp, having advanced before, stops for this
    /// many ticks.
    pub stale_ticks: u32,
    /// Ticks after a grow, or after swap/fault pressure, during which nothing is taken back.
    pub holdoff_ticks: u32,
    /// Which guest figure is the VM's free memory.
    pub free_figure: FreeFigure,
}

impl PolicyConfig {
    /// The documented defaults (README "Algorithm").
    pub const DEFAULT: PolicyConfig = PolicyConfig {
        interval_s: 1,
        vm_min_unused_kib: mib_to_kib(100),
        host_min_free_kib: mib_to_kib(200),
        shrink_band_kib: mib_to_kib(64),
        shrink_fraction_pct: 25,
        shrink_step_max_kib: mib_to_kib(256),
        vm_min_size_kib: mib_to_kib(256),
        lead_ticks: 3,
        stale_ticks: 4,
        holdoff_ticks: 5,
        free_figure: FreeFigure::Available,
    };

    /// Checks the ranges `decide()` is documented for. `decide()` never panics on an invalid
    /// config either, but its decisions would be meaningless.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fail = |what: &'static str| Err(PolicyError::InvalidConfig(what));
        if self.interval_s == 0 {
            return fail("the interval must be at least 1 second");
        }
        if self.vm_min_unused_kib == 0 {
            return fail("--vm-min-unused must be greater than 0");
        }
        if !(1..=100).contains(&self.shrink_fraction_pct) {
            return fail("--shrink-fraction must be between 1 and 100 (percent)");
        }
        if self.shrink_step_max_kib == 0 {
            return fail("--shrink-step-max must be greater than 0");
        }
        if self.lead_ticks == 0 {
            return fail("--lead-ticks must be at least 1");
        }
        if self.stale_ticks < 2 {
            return fail("--stale-ticks must be at least 2 (stats timestamps have 1 s resolution)");
        }
        if self.interval_s > MAX_INTERVAL_S || self.lead_ticks > MAX_LEAD_TICKS {
            return fail("the interval is at most 3600 s and --lead-ticks at most 100");
        }
        Ok(())
    }

    /// The configuration `decide()` really works with: every field clamped into the range
    /// `validate` accepts (a valid configuration is returned unchanged), every size to
    /// [`MAX_KIB`]. This is what keeps the policy's arithmetic within `u64` for any input.
    pub fn sanitized(&self) -> PolicyConfig {
        PolicyConfig {
            interval_s: self.interval_s.clamp(1, MAX_INTERVAL_S),
            vm_min_unused_kib: self.vm_min_unused_kib.clamp(1, MAX_KIB),
            host_min_free_kib: self.host_min_free_kib.min(MAX_KIB),
            shrink_band_kib: self.shrink_band_kib.min(MAX_KIB),
            shrink_fraction_pct: self.shrink_fraction_pct.clamp(1, 100),
            shrink_step_max_kib: self.shrink_step_max_kib.clamp(1, MAX_KIB),
            vm_min_size_kib: self.vm_min_size_kib.min(MAX_KIB),
            lead_ticks: self.lead_ticks.clamp(1, MAX_LEAD_TICKS),
            stale_ticks: self.stale_ticks.max(2),
            holdoff_ticks: self.holdoff_ticks,
            free_figure: self.free_figure,
        }
    }

    /// How far ahead a growing VM is given its consumption, seconds.
    pub fn lead_s(&self) -> u64 {
        self.lead_ticks.saturating_mul(self.interval_s)
    }
}

/// Longest interval and lead accepted (the CLI has the same bounds).
pub const MAX_INTERVAL_S: u64 = 3600;
pub const MAX_LEAD_TICKS: u64 = 100;

impl Default for PolicyConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    InvalidConfig(&'static str),
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::InvalidConfig(what) => write!(f, "invalid policy setting: {what}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// One VM's balloon statistics as a backend read them, in KiB. `None` means "not reported"
/// (no balloon driver, QEMU's u64::MAX, a missing libvirt tag), never a fake zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmStats {
    /// Current balloon size: the memory the guest has now.
    pub actual_kib: u64,
    /// The most the VM may be given.
    pub max_kib: u64,
    /// Guest MemFree.
    pub unused_kib: Option<u64>,
    /// Guest MemAvailable (free plus reclaimable cache).
    pub usable_kib: Option<u64>,
    /// Guest MemTotal: what the guest sees of its balloon size, at the sample's time.
    pub available_kib: Option<u64>,
    /// Cumulative memory swapped in / out.
    pub swap_in_kib: Option<u64>,
    pub swap_out_kib: Option<u64>,
    /// Cumulative major page faults (a count).
    pub major_faults: Option<u64>,
    /// When the guest last answered (epoch seconds, 1 s resolution). 0 means never.
    pub last_update_s: Option<u64>,
    /// Host memory backing the VM now: the QEMU process's resident set (libvirt's `rss`
    /// balloon stat; for QMP, VmRSS of the socket's peer process). It includes QEMU's own
    /// overhead. Memory granted and not yet touched by the guest is not in it.
    pub rss_kib: Option<u64>,
    /// Cumulative guest counters that Linux 6.12 and later report through the balloon
    /// (QMP `stat-oom-kills`, `stat-alloc-stalls`, `stat-direct-reclaims`): OOM kills,
    /// allocation stalls, and pages reclaimed directly by allocating tasks.
    pub oom_kills: Option<u64>,
    pub alloc_stalls: Option<u64>,
    pub direct_reclaims: Option<u64>,
}

/// What the operator allows one VM (configuration file); the defaults leave it to the global
/// settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmLimits {
    /// Never shrink below this size (instead of `vm_min_size`); a VM below it is grown to it.
    pub min_kib: Option<u64>,
    /// Never grow above this size (instead of the VM's own max); a VM above it is shrunk
    /// toward it as far as its free memory allows.
    pub max_kib: Option<u64>,
    /// Share of a shortage: under shortage a VM gets grants in proportion to its weight
    /// (1..=`MAX_WEIGHT`).
    pub weight: u32,
}

impl VmLimits {
    pub const DEFAULT: VmLimits = VmLimits { min_kib: None, max_kib: None, weight: 1 };
}

impl Default for VmLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The host's memory, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// /proc/meminfo MemAvailable.
    pub available_kib: u64,
    /// /proc/meminfo MemTotal.
    pub total_kib: u64,
}

/// Everything a tick knows, filled by a backend. `vms[slot]` is `None` for a free slot; a
/// slot's history belongs to whichever VM the caller put in that slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub host: HostStats,
    pub vms: [Option<VmStats>; MAX_DOMAINS],
    /// The operator's limits per slot (the coordinator fills them from its configuration).
    pub limits: [VmLimits; MAX_DOMAINS],
}

impl Snapshot {
    pub const EMPTY: Snapshot = Snapshot {
        host: HostStats { available_kib: 0, total_kib: 0 },
        vms: [None; MAX_DOMAINS],
        limits: [VmLimits::DEFAULT; MAX_DOMAINS],
    };

    /// Empties every slot without touching the allocator.
    pub fn clear(&mut self) {
        *self = Self::EMPTY;
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// What the policy remembers of one VM between ticks. The caller resets a slot
/// ([`History::reset`]) when a different VM takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmHistory {
    /// `last_update` of the previous sample that had one.
    pub last_update_s: Option<u64>,
    /// The timestamp has advanced at least once: only then can it be called stale.
    pub update_advanced: bool,
    /// Ticks since the timestamp last advanced.
    pub ticks_unchanged: u32,
    /// Used memory (MemTotal minus the free figure) in the last fresh sample and the one before.
    pub used_kib: Option<u64>,
    pub used_before_kib: Option<u64>,
    /// Seconds between the last fresh sample and the one before.
    pub last_step_s: u64,
    /// Estimated consumption (growth of used memory), KiB per second, never negative.
    pub consumption_kib_s: u64,
    /// Balloon size seen last tick.
    pub actual_kib: Option<u64>,
    /// Balloon size minus guest MemTotal, learned while the balloon was at rest.
    pub size_offset_kib: Option<i64>,
    /// Cumulative guest counters as last seen.
    pub swap_in_kib: Option<u64>,
    pub swap_out_kib: Option<u64>,
    pub major_faults: Option<u64>,
    pub oom_kills: Option<u64>,
    pub alloc_stalls: Option<u64>,
    pub direct_reclaims: Option<u64>,
    /// QEMU's own share of its RSS (RSS minus what the guest has touched), the lowest seen,
    /// allowed to creep up slowly. Backed guest memory is RSS minus this.
    pub overhead_kib: Option<u64>,
    /// The sample timestamp the last applied action was based on.
    pub acted_on_update_s: Option<u64>,
    /// Our last applied target, until the balloon reaches it (or we give up on it).
    pub target_kib: Option<u64>,
    /// That target is a shrink.
    pub shrinking: bool,
    /// Ticks the balloon sat still short of our target.
    pub ticks_still: u32,
    /// After a stalled shrink: no shrink for `stall_backoff_ticks` ticks (doubling).
    pub stall_backoff_ticks: u32,
    pub ticks_since_stall: u32,
    /// Consecutive rounds held because the balloon was moving to a target not ours.
    pub ticks_settling: u32,
    pub ticks_since_grow: u32,
    pub ticks_since_pressure: u32,
    pub ticks_since_alarm: u32,
    /// The last grant, until its memory shows (see [`GrantCheck`]).
    pub grant: Option<GrantCheck>,
    /// The last grant did not show: no further grant until it does.
    pub unverified: bool,
    /// What the last `decide()` saw when it proposed an action, for [`History::applied`].
    pub proposal: Proposal,
}

/// A grant under check: once it landed, its memory must show as free memory, as memory the
/// host backs (RSS), or as consumption at the rate seen before the grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantCheck {
    pub grant_kib: u64,
    pub target_kib: u64,
    /// The free figure (estimated now) when the grant was decided.
    pub free_before_kib: u64,
    /// RSS when the grant was decided.
    pub rss_before_kib: Option<u64>,
    /// Consumption estimated before the grant.
    pub rate_kib_s: u64,
    /// Sample timestamp the grant was based on.
    pub decided_at_s: Option<u64>,
    /// Sample timestamp when the balloon was first seen at the target: a sample newer than
    /// this one was taken after the grant landed.
    pub landed_at_s: Option<u64>,
    pub ticks: u32,
}

/// The figures an action was decided on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Proposal {
    pub actual_kib: u64,
    pub free_kib: u64,
    pub rss_kib: Option<u64>,
    pub rate_kib_s: u64,
}

impl VmHistory {
    pub const EMPTY: VmHistory = VmHistory {
        last_update_s: None,
        update_advanced: false,
        ticks_unchanged: 0,
        used_kib: None,
        used_before_kib: None,
        last_step_s: 0,
        consumption_kib_s: 0,
        actual_kib: None,
        size_offset_kib: None,
        swap_in_kib: None,
        swap_out_kib: None,
        major_faults: None,
        oom_kills: None,
        alloc_stalls: None,
        direct_reclaims: None,
        overhead_kib: None,
        acted_on_update_s: None,
        target_kib: None,
        shrinking: false,
        ticks_still: 0,
        stall_backoff_ticks: 0,
        ticks_since_stall: u32::MAX,
        ticks_settling: 0,
        ticks_since_grow: u32::MAX,
        ticks_since_pressure: u32::MAX,
        ticks_since_alarm: u32::MAX,
        grant: None,
        unverified: false,
        proposal: Proposal { actual_kib: 0, free_kib: 0, rss_kib: None, rate_kib_s: 0 },
    };
}

impl Default for VmHistory {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// Per-slot history, owned by the caller across ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    pub vms: [VmHistory; MAX_DOMAINS],
}

impl History {
    pub const EMPTY: History = History { vms: [VmHistory::EMPTY; MAX_DOMAINS] };

    /// Forgets a slot, for a VM that is new to it.
    pub fn reset(&mut self, slot: usize) {
        if let Some(h) = self.vms.get_mut(slot) {
            *h = VmHistory::EMPTY;
        }
    }

    /// Records that `decision` (made for `slot` by the last [`decide`]) took effect. Only
    /// applied actions shape the next decisions: a target that never reached the hypervisor
    /// must not be waited for, and a grant that was not made must not be checked.
    pub fn applied(&mut self, slot: usize, decision: &Decision) {
        let Some(h) = self.vms.get_mut(slot) else { return };
        let Some(target_kib) = decision.action.target_kib() else { return };
        h.acted_on_update_s = decision.sample_s;
        h.target_kib = Some(target_kib);
        h.shrinking = matches!(decision.action, Action::Shrink { .. });
        h.ticks_still = 0;
        let p = h.proposal;
        match decision.action {
            Action::Grow { .. } => {
                h.ticks_since_grow = 0;
                h.grant = Some(GrantCheck {
                    grant_kib: target_kib.saturating_sub(p.actual_kib),
                    target_kib,
                    free_before_kib: p.free_kib,
                    rss_before_kib: p.rss_kib,
                    rate_kib_s: p.rate_kib_s,
                    decided_at_s: decision.sample_s,
                    landed_at_s: None,
                    ticks: 0,
                });
            }
            Action::Cancel { .. } => {
                h.ticks_since_stall = 0;
                h.stall_backoff_ticks = h
                    .stall_backoff_ticks
                    .saturating_mul(2)
                    .clamp(observe::STALL_BACKOFF_MIN_TICKS, observe::STALL_BACKOFF_MAX_TICKS);
            }
            Action::Shrink { .. } | Action::Hold(_) => {}
        }
    }
}

impl Default for History {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// Why a VM got no new target this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// No VM in this slot.
    Absent,
    /// No free-memory figure: no balloon driver, or the guest never answered.
    NoStats,
    /// The stats timestamp stopped advancing.
    Stale,
    /// Figures that cannot be true together (max 0, actual above max, ...).
    Inconsistent,
    /// This sample was already acted on; wait for one that shows the result.
    AwaitingStats,
    /// Seen for the first time, or its balloon is moving to a target that is not ours.
    Settling,
    /// Needs memory but is at its max.
    AtMax,
    /// Needs memory but the host and the other VMs have none to give.
    HostShort,
    /// Has spare memory but was just grown or is under swap/fault pressure.
    Holdoff,
    /// Has spare memory but is at the minimum size.
    AtFloor,
    /// Within the band: nothing to do.
    Steady,
    /// Left out by the operator (`--exclude`, `--domains`, the configuration file).
    Excluded,
    /// Present, but the backend got no figures for it this round: its QEMU did not answer in
    /// time or answered with an error, or a libvirt call on it failed. Set by the coordinator:
    /// `decide` sees only an empty slot, which it holds as `Absent`.
    Unanswered,
    /// Got a grant that its figures do not show: neither free memory nor host-side use rose.
    /// No further grant until it shows use of what it got.
    Unverified,
    /// A shrink of ours stopped short (the guest could not free pages fast enough); nothing
    /// is taken from it for a while.
    Stalled,
    /// Its balloon is still moving to our last target.
    InFlight,
}

impl Hold {
    /// The reason as a short snake_case word, for JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Absent => "absent",
            Hold::NoStats => "no_stats",
            Hold::Stale => "stale",
            Hold::Inconsistent => "inconsistent",
            Hold::AwaitingStats => "awaiting_stats",
            Hold::Settling => "settling",
            Hold::AtMax => "at_max",
            Hold::HostShort => "host_short",
            Hold::Holdoff => "holdoff",
            Hold::AtFloor => "at_floor",
            Hold::Steady => "steady",
            Hold::Excluded => "excluded",
            Hold::Unanswered => "unanswered",
            Hold::Unverified => "unverified",
            Hold::Stalled => "stalled",
            Hold::InFlight => "in_flight",
        }
    }
}

/// The decision for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Hold(Hold),
    Grow {
        target_kib: u64,
    },
    Shrink {
        target_kib: u64,
    },
    /// Stop a shrink of ours that stalled: the target becomes where the balloon is.
    Cancel {
        target_kib: u64,
    },
}

impl Action {
    /// The balloon target this action sets, if any.
    pub fn target_kib(self) -> Option<u64> {
        match self {
            Action::Grow { target_kib } | Action::Shrink { target_kib } | Action::Cancel { target_kib } => {
                Some(target_kib)
            }
            Action::Hold(_) => None,
        }
    }

    /// A short word for logs, JSON and metrics: `grow`, `shrink`, `cancel`, `hold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Grow { .. } => "grow",
            Action::Shrink { .. } => "shrink",
            Action::Cancel { .. } => "cancel",
            Action::Hold(_) => "hold",
        }
    }
}

/// A decision with the figures it was based on, for logs and invariant checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Estimated free memory now, by the configured figure (MemAvailable or MemFree), the
    /// sample corrected for balloon moves since it was taken.
    pub free_now_kib: Option<u64>,
    /// Estimated guest MemFree now.
    pub unused_now_kib: Option<u64>,
    /// Free memory this VM must keep: threshold plus lead.
    pub keep_kib: u64,
    /// Estimated consumption.
    pub consumption_kib_s: u64,
    /// For a VM that needs memory: how much of the need could not be funded.
    pub short_kib: u64,
    /// Memory the VM has been given that the host does not back yet (balloon size minus what
    /// the guest has touched): the host pays it when the guest touches it.
    pub debt_kib: u64,
    /// The sample timestamp this decision was based on (recorded when it is applied).
    pub sample_s: Option<u64>,
}

impl Decision {
    pub const ABSENT: Decision = Decision {
        action: Action::Hold(Hold::Absent),
        free_now_kib: None,
        unused_now_kib: None,
        keep_kib: 0,
        consumption_kib_s: 0,
        short_kib: 0,
        debt_kib: 0,
        sample_s: None,
    };
}

/// All decisions of one tick plus its totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decisions {
    pub vms: [Decision; MAX_DOMAINS],
    /// Sum of what needy VMs asked for.
    pub demand_kib: u64,
    /// Sum of grows.
    pub granted_kib: u64,
    /// Sum of shrinks.
    pub released_kib: u64,
    /// What the host can still give before any move this tick: MemAvailable minus every
    /// served VM's debt (may be below the reserve, then memory is taken back).
    pub headroom_kib: u64,
    /// The band was waived because host and normal donations could not cover demand.
    pub pressure: bool,
}

impl Decisions {
    pub const EMPTY: Decisions = Decisions {
        vms: [Decision::ABSENT; MAX_DOMAINS],
        demand_kib: 0,
        granted_kib: 0,
        released_kib: 0,
        headroom_kib: 0,
        pressure: false,
    };
}

/// Decides this tick's balloon targets into `out`. Pure: the same config, snapshot and
/// history always give the same decisions and the same updated history. What a decision
/// changes in the VM's history is recorded only once it has been applied
/// ([`History::applied`]): a failed or dry-run action leaves no trace.
pub fn decide(config: &PolicyConfig, snapshot: &Snapshot, history: &mut History, out: &mut Decisions) {
    let config = config.sanitized();
    // The views of the VMs present, in slot order: past this loop the tick's work grows with
    // the VMs there are, not with the slots (a host runs a few VMs in 256 slots).
    let mut views = [View::ABSENT; MAX_DOMAINS];
    let mut present = 0;
    let mut debt_total = 0u64;
    for (slot, (vm, d)) in snapshot.vms.iter().zip(out.vms.iter_mut()).enumerate() {
        let Some(vm) = vm else {
            *d = Decision::ABSENT;
            continue;
        };
        views[present] = observe(&config, slot, &vm.clamped(), &snapshot.limits[slot], &mut history.vms[slot], d);
        debt_total += d.debt_kib;
        present += 1;
    }
    let views = &views[..present];
    let host_kib = snapshot.host.available_kib.min(MAX_KIB);
    // The host must end strictly above its reserve even once every guest has touched all it
    // has been given.
    let line = config.host_min_free_kib + 1;
    let host_budget = host_kib.saturating_sub(debt_total + line);
    let deficit = (debt_total + line).saturating_sub(host_kib);
    share::decide_moves(&config, views, host_budget, deficit, out);
    out.headroom_kib = host_kib.saturating_sub(debt_total);
    for view in views {
        let d = &out.vms[view.slot];
        if d.action.target_kib().is_some() {
            history.vms[view.slot].proposal = Proposal {
                actual_kib: view.actual_kib,
                free_kib: d.free_now_kib.unwrap_or(0),
                rss_kib: snapshot.vms[view.slot].and_then(|vm| vm.clamped().rss_kib),
                rate_kib_s: d.consumption_kib_s,
            };
        }
    }
}

/// [`decide`], then every action recorded as applied: for simulations, benchmarks and tests in
/// which every balloon change succeeds.
pub fn decide_all_applied(config: &PolicyConfig, snapshot: &Snapshot, history: &mut History, out: &mut Decisions) {
    decide(config, snapshot, history, out);
    for (slot, d) in out.vms.iter().enumerate() {
        history.applied(slot, d);
    }
}

/// Targets for stopping the daemon with `--restore-on-exit`: every VM grows back toward its
/// max (or configured maximum), largest shortfall first, as far as the host's headroom above
/// its reserve allows, so that stopping the daemon never leaves a guest squeezed and never
/// overcommits the host. Uses the history for the VMs' debts; changes nothing in it.
pub fn restore(config: &PolicyConfig, snapshot: &Snapshot, history: &History, out: &mut Decisions) {
    let config = config.sanitized();
    *out = Decisions::EMPTY;
    let mut shortfall = [0u64; MAX_DOMAINS];
    let mut order = [0u16; MAX_DOMAINS];
    let mut n = 0;
    let mut debt_total = 0u64;
    for (slot, vm) in snapshot.vms.iter().enumerate() {
        let Some(vm) = vm else { continue };
        let vm = vm.clamped();
        let h = &history.vms[slot];
        let debt = observe::debt_kib(&vm, h);
        debt_total += debt;
        let d = &mut out.vms[slot];
        d.debt_kib = debt;
        d.action = Action::Hold(Hold::AtMax);
        let cap = observe::cap_kib(&vm, &snapshot.limits[slot]);
        if vm.actual_kib == 0 || vm.actual_kib > vm.max_kib {
            d.action = Action::Hold(Hold::Inconsistent);
            continue;
        }
        shortfall[slot] = cap.saturating_sub(vm.actual_kib);
        if shortfall[slot] >= MIN_MOVE_KIB {
            order[n] = u16::try_from(slot).unwrap_or(0);
            n += 1;
        }
    }
    let host_kib = snapshot.host.available_kib.min(MAX_KIB);
    out.headroom_kib = host_kib.saturating_sub(debt_total);
    let mut budget = host_kib.saturating_sub(debt_total + config.host_min_free_kib + 1);
    let order = &mut order[..n];
    order.sort_unstable_by(|a, b| shortfall[usize::from(*b)].cmp(&shortfall[usize::from(*a)]).then(a.cmp(b)));
    for slot in order.iter().map(|s| usize::from(*s)) {
        let Some(vm) = snapshot.vms[slot] else { continue };
        let actual = vm.actual_kib.min(MAX_KIB);
        let give = shortfall[slot].min(budget);
        let target = page_down(actual + give);
        let d = &mut out.vms[slot];
        if target >= actual + MIN_MOVE_KIB {
            budget -= target - actual;
            out.granted_kib += target - actual;
            d.action = Action::Grow { target_kib: target };
        } else {
            d.action = Action::Hold(Hold::HostShort);
        }
        d.short_kib = shortfall[slot] - target.saturating_sub(actual).min(shortfall[slot]);
    }
}

impl VmStats {
    /// Every figure clamped to what the policy's arithmetic is built for: sizes to
    /// [`MAX_KIB`], counters and timestamps to 2^48 (far beyond any real value).
    pub fn clamped(&self) -> VmStats {
        const MAX_COUNT: u64 = 1 << 48;
        let size = |v: Option<u64>| v.map(|v| v.min(MAX_KIB));
        let count = |v: Option<u64>| v.map(|v| v.min(MAX_COUNT));
        VmStats {
            actual_kib: self.actual_kib.min(MAX_KIB),
            max_kib: self.max_kib.min(MAX_KIB),
            unused_kib: size(self.unused_kib),
            usable_kib: size(self.usable_kib),
            available_kib: size(self.available_kib),
            swap_in_kib: count(self.swap_in_kib),
            swap_out_kib: count(self.swap_out_kib),
            major_faults: count(self.major_faults),
            last_update_s: count(self.last_update_s),
            rss_kib: size(self.rss_kib),
            oom_kills: count(self.oom_kills),
            alloc_stalls: count(self.alloc_stalls),
            direct_reclaims: count(self.direct_reclaims),
        }
    }
}

/// Rounds a size down to whole pages.
pub const fn page_down(kib: u64) -> u64 {
    kib - kib % PAGE_KIB
}

/// Rounds a size up to whole pages.
pub const fn page_up(kib: u64) -> u64 {
    page_down(kib.saturating_add(PAGE_KIB - 1))
}
