//! The pure balancing policy: one call per tick, from a snapshot of every VM's balloon
//! statistics and the host's free memory to a new balloon target per VM.
//!
//! `decide()` does no I/O, reads no clock, allocates nothing and cannot panic or overflow:
//! every input is an arbitrary `u64` as far as it is concerned. All sizes are KiB.
//!
//! # The algorithm, per tick
//! 1. **Observe.** For each VM: is the sample fresh (its `last_update` advanced), stale
//!    (it advanced once, then stopped for `stale_ticks` ticks) or missing? From fresh samples
//!    learn the consumption rate (growth of guest-used memory per second over the last two
//!    sample intervals, taken at once when it rises and decayed by 25 % per sample when it
//!    falls) and, when the balloon is at rest, the
//!    constant offset between the balloon size and the guest's MemTotal. The offset lets the
//!    policy estimate the guest's free memory *now* even if a sample was taken before the last
//!    balloon move landed, so one sample is never counted twice. A VM seen for the first
//!    time, or whose balloon moved without reaching our last target (someone else's target is
//!    in flight), is left alone for up to 5 rounds until it rests.
//! 2. **Classify.** `keep = vm_min_unused + rate × lead_ticks × interval` is the free memory a
//!    VM must keep. A VM with less (or one that swapped in) is *needy*: it should grow to
//!    `keep + band/2`. A VM with more is a potential *donor* of
//!    `min(excess × fraction, step_max, actual − vm_min_size)`, but gives it in normal times
//!    only if its excess is above the hysteresis band, and never within `holdoff_ticks` of a
//!    grow or of swap/fault pressure.
//! 3. **Budget.** The host funds growth down to `host_min_free` (never at or below it). When
//!    host plus normal donations cannot cover the needs (or the host itself is under its
//!    reserve), the band is waived and donors give more (still within fraction and step cap):
//!    memory moves VM to VM. If that is still short, the needy VMs share what exists in
//!    proportion to their need.
//! 4. **Act.** Emit grow/shrink targets; record the action in the VM's history.

pub mod invariants;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

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

/// How fast the consumption estimate falls when a sample shows less consumption (percent of
/// the difference per sample). Rises are taken at once: a guest must never be caught short
/// because the estimator was still averaging.
const RATE_DECAY_PCT: u64 = 25;

/// Major page faults per second above which a guest counts as under memory pressure
/// (re-reading evicted pages), so nothing is taken from it for `holdoff_ticks`.
const PRESSURE_MAJOR_FAULTS_PER_S: u64 = 100;

/// Rounds a VM is left alone while its balloon moves towards a target that is not ours (set
/// by libvirt at boot, or by an operator): acting on a moving balloon would override that
/// target with one computed from a size that is about to change.
const SETTLE_TICKS: u32 = 5;

/// Smallest balloon change worth making when the band is waived or a grant is rationed:
/// below this a move costs the guest more than it returns.
const MIN_MOVE_KIB: u64 = 1024;

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
        shrink_band_kib: mib_to_kib(128),
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
        Ok(())
    }
}

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
    /// Guest-used memory in the last fresh sample, and in the one before.
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
    pub swap_in_kib: Option<u64>,
    pub swap_out_kib: Option<u64>,
    pub major_faults: Option<u64>,
    /// The sample timestamp the last action was based on.
    pub acted_on_update_s: Option<u64>,
    /// The last target we set.
    pub target_kib: Option<u64>,
    /// Consecutive rounds held because the balloon was moving to a target not ours.
    pub ticks_settling: u32,
    pub ticks_since_grow: u32,
    pub ticks_since_pressure: u32,
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
        acted_on_update_s: None,
        target_kib: None,
        ticks_settling: 0,
        ticks_since_grow: u32::MAX,
        ticks_since_pressure: u32::MAX,
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
    /// applied actions may shape the next decisions: a target that never reached the
    /// hypervisor must not be waited for.
    pub fn applied(&mut self, slot: usize, decision: &Decision) {
        let Some(h) = self.vms.get_mut(slot) else { return };
        let Some(target_kib) = decision.action.target_kib() else { return };
        if let Action::Grow { .. } = decision.action {
            h.ticks_since_grow = 0;
        }
        h.acted_on_update_s = decision.sample_s;
        h.target_kib = Some(target_kib);
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

/// How the policy sees one VM after observing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Hold(Hold),
    Needy { need_kib: u64 },
    Donor { normal_kib: u64, pressure_kib: u64 },
}

#[derive(Clone, Copy, Debug)]
struct View {
    class: Class,
    actual_kib: u64,
    unused_now_kib: Option<u64>,
    keep_kib: u64,
    consumption_kib_s: u64,
    update_s: Option<u64>,
}

impl View {
    const ABSENT: View = View {
        class: Class::Hold(Hold::Absent),
        actual_kib: 0,
        unused_now_kib: None,
        keep_kib: 0,
        consumption_kib_s: 0,
        update_s: None,
    };
}

/// Decides this tick's balloon targets into `out`. Pure: the same config, snapshot and
/// history always give the same decisions and the same updated history. What a decision
/// changes in the VM's history is recorded only once it has been applied
/// ([`History::applied`]): a failed or dry-run action leaves no trace.
pub fn decide(config: &PolicyConfig, snapshot: &Snapshot, history: &mut History, out: &mut Decisions) {
    let mut views = [View::ABSENT; MAX_DOMAINS];
    for ((view, vm), h) in views.iter_mut().zip(&snapshot.vms).zip(history.vms.iter_mut()) {
        if let Some(vm) = vm {
            *view = observe(config, vm, h);
        }
    }

    let mut demand: u128 = 0;
    let mut normal_total: u128 = 0;
    let mut extra_total: u128 = 0;
    for v in &views {
        match v.class {
            Class::Needy { need_kib } => demand += u128::from(need_kib),
            Class::Donor { normal_kib, pressure_kib } => {
                normal_total += u128::from(normal_kib);
                extra_total += u128::from(pressure_kib - normal_kib);
            }
            Class::Hold(_) => {}
        }
    }

    // The host must end strictly above its reserve after funding growth.
    let host = u128::from(snapshot.host.available_kib);
    let reserve_line = u128::from(config.host_min_free_kib) + 1;
    let shortfall = (demand + reserve_line).saturating_sub(host + normal_total);
    let pressure = shortfall > 0 && extra_total > 0;
    let take_total = shortfall.min(extra_total);

    let mut releases = [0u64; MAX_DOMAINS];
    let mut released: u128 = 0;
    for (release, v) in releases.iter_mut().zip(&views) {
        if let Class::Donor { normal_kib, pressure_kib } = v.class {
            let extra = u128::from(pressure_kib - normal_kib);
            let take = (extra * take_total).checked_div(extra_total).unwrap_or(0);
            // take <= extra, so the sum stays within pressure_kib.
            let mut r = normal_kib.saturating_add(u64::try_from(take).unwrap_or(u64::MAX));
            if normal_kib == 0 && r < MIN_MOVE_KIB {
                r = 0;
            }
            *release = r;
            released += u128::from(r);
        }
    }

    let budget = (host + released).saturating_sub(reserve_line);
    let decisions = out;
    *decisions = Decisions::EMPTY;
    let mut granted: u128 = 0;
    for (slot, v) in views.iter().enumerate() {
        let d = &mut decisions.vms[slot];
        d.sample_s = v.update_s;
        d.free_now_kib = v.unused_now_kib;
        d.unused_now_kib = v.unused_now_kib;
        d.keep_kib = v.keep_kib;
        d.consumption_kib_s = v.consumption_kib_s;
        d.action = match v.class {
            Class::Hold(why) => Action::Hold(why),
            Class::Needy { need_kib } => {
                let need = u128::from(need_kib);
                let mut grant = if budget >= demand { need } else { need * budget / demand };
                if grant < need && grant < u128::from(MIN_MOVE_KIB) {
                    grant = 0;
                }
                d.short_kib = u64::try_from(need - grant).unwrap_or(u64::MAX);
                if grant == 0 {
                    Action::Hold(Hold::HostShort)
                } else {
                    granted += grant;
                    let grant = u64::try_from(grant).unwrap_or(u64::MAX);
                    let target_kib = v.actual_kib.saturating_add(grant);
                    Action::Grow { target_kib }
                }
            }
            Class::Donor { .. } => {
                let release = releases[slot];
                if release == 0 {
                    Action::Hold(Hold::Steady)
                } else {
                    let target_kib = v.actual_kib - release;
                    Action::Shrink { target_kib }
                }
            }
        };
    }

    decisions.demand_kib = u64::try_from(demand).unwrap_or(u64::MAX);
    decisions.granted_kib = u64::try_from(granted).unwrap_or(u64::MAX);
    decisions.released_kib = u64::try_from(released).unwrap_or(u64::MAX);
    decisions.pressure = pressure;
}

/// [`decide`], then every action recorded as applied: for simulations, benchmarks and tests in
/// which every balloon change succeeds.
pub fn decide_all_applied(config: &PolicyConfig, snapshot: &Snapshot, history: &mut History, out: &mut Decisions) {
    decide(config, snapshot, history, out);
    for (slot, d) in out.vms.iter().enumerate() {
        history.applied(slot, d);
    }
}

/// Updates one VM's history with its new sample and classifies it.
fn observe(config: &PolicyConfig, vm: &VmStats, h: &mut VmHistory) -> View {
    h.ticks_since_grow = h.ticks_since_grow.saturating_add(1);
    h.ticks_since_pressure = h.ticks_since_pressure.saturating_add(1);
    let first_sight = h.actual_kib.is_none();
    let at_rest = h.actual_kib == Some(vm.actual_kib);
    h.actual_kib = Some(vm.actual_kib);

    let mut view = View { actual_kib: vm.actual_kib, update_s: vm.last_update_s, ..View::ABSENT };
    let hold = |mut view: View, why| {
        view.class = Class::Hold(why);
        view
    };

    let (fresh, dt_s) = track_freshness(config, vm.last_update_s, h);
    let unused = match (vm.unused_kib, vm.last_update_s) {
        (None, _) | (_, Some(0)) => return hold(view, Hold::NoStats),
        (Some(unused), _) => unused,
    };
    if vm.max_kib == 0 || vm.actual_kib == 0 || vm.actual_kib > vm.max_kib {
        return hold(view, Hold::Inconsistent);
    }
    if h.update_advanced && h.ticks_unchanged >= config.stale_ticks {
        return hold(view, Hold::Stale);
    }

    if fresh {
        learn(vm, h, unused, at_rest, dt_s);
    }

    // Estimate free memory now: the sample describes the guest at the size it had then.
    let size_at_sample = match (vm.available_kib, h.size_offset_kib) {
        (Some(total), Some(offset)) => clamp_to_u64(i128::from(total) + i128::from(offset)),
        _ => vm.actual_kib,
    };
    let unused_now =
        clamp_to_u64(i128::from(unused) + i128::from(vm.actual_kib) - i128::from(size_at_sample)).min(vm.actual_kib);
    let lead_s = config.lead_ticks.saturating_mul(config.interval_s.max(1));
    let keep = config.vm_min_unused_kib.saturating_add(h.consumption_kib_s.saturating_mul(lead_s));
    view.unused_now_kib = Some(unused_now);
    view.keep_kib = keep;
    view.consumption_kib_s = h.consumption_kib_s;

    if !fresh && h.acted_on_update_s.is_some() && h.acted_on_update_s == vm.last_update_s {
        return hold(view, Hold::AwaitingStats);
    }
    let swapped_in = if fresh { counter_delta(vm.swap_in_kib, h.swap_in_kib) } else { 0 };
    if fresh {
        let swapped_out = counter_delta(vm.swap_out_kib, h.swap_out_kib);
        let faults_per_s = counter_delta(vm.major_faults, h.major_faults) / dt_s.max(1);
        if swapped_in > 0 || swapped_out > 0 || faults_per_s >= PRESSURE_MAJOR_FAULTS_PER_S {
            h.ticks_since_pressure = 0;
        }
        h.swap_in_kib = vm.swap_in_kib;
        h.swap_out_kib = vm.swap_out_kib;
        h.major_faults = vm.major_faults;
    }

    // A balloon that moved since last round without reaching our target is on its way to
    // someone else's; a VM seen for the first time may be too (libvirt balloons guests down
    // right after boot). Wait for it to rest, for a bounded number of rounds.
    let foreign_move = !at_rest && h.target_kib != Some(vm.actual_kib);
    if first_sight || (foreign_move && h.ticks_settling < SETTLE_TICKS) {
        h.ticks_settling = h.ticks_settling.saturating_add(1);
        return hold(view, Hold::Settling);
    }
    if !foreign_move {
        h.ticks_settling = 0;
    }

    if unused_now < keep || swapped_in > 0 {
        let want = keep.saturating_add(config.shrink_band_kib / 2);
        let need = want.saturating_sub(unused_now).max(swapped_in);
        let room = vm.max_kib - vm.actual_kib;
        if room == 0 {
            return hold(view, Hold::AtMax);
        }
        view.class = Class::Needy { need_kib: need.min(room) };
        return view;
    }

    if h.ticks_since_grow < config.holdoff_ticks || h.ticks_since_pressure < config.holdoff_ticks {
        return hold(view, Hold::Holdoff);
    }
    let room = vm.actual_kib.saturating_sub(config.vm_min_size_kib);
    if room == 0 {
        return hold(view, Hold::AtFloor);
    }
    let excess = unused_now - keep;
    let share = u128::from(excess) * u128::from(config.shrink_fraction_pct.min(100)) / 100;
    let pressure_kib = u64::try_from(share).unwrap_or(u64::MAX).min(config.shrink_step_max_kib).min(room);
    let normal_kib = if excess > config.shrink_band_kib { pressure_kib } else { 0 };
    view.class = Class::Donor { normal_kib, pressure_kib };
    view
}

/// Tracks the sample timestamp: is this a new sample, and how many seconds after the last?
/// A timestamp that has never moved for `stale_ticks` ticks is a frozen clock (libvirt's test
/// driver has one): each tick then counts as a new sample, as when the backend reports no
/// timestamp at all.
fn track_freshness(config: &PolicyConfig, update_s: Option<u64>, h: &mut VmHistory) -> (bool, u64) {
    let interval_s = config.interval_s.max(1);
    let fresh = match (update_s, h.last_update_s) {
        (None, _) => (true, interval_s),
        (Some(now), Some(prev)) if now == prev => {
            h.ticks_unchanged = h.ticks_unchanged.saturating_add(1);
            let frozen = !h.update_advanced && h.ticks_unchanged >= config.stale_ticks;
            (frozen, interval_s)
        }
        (Some(now), Some(prev)) if now > prev => {
            h.update_advanced = true;
            h.ticks_unchanged = 0;
            (true, now - prev)
        }
        // First sample, or the clock went back (QEMU restarted behind the same identity).
        (Some(_), _) => {
            h.update_advanced = false;
            h.ticks_unchanged = 0;
            (true, interval_s)
        }
    };
    h.last_update_s = update_s;
    fresh
}

/// Learns consumption and the size offset from a fresh sample.
fn learn(vm: &VmStats, h: &mut VmHistory, unused: u64, at_rest: bool, dt_s: u64) {
    // Used memory from one sample's own figures is immune to balloon moves in flight; the
    // host-side size is only trusted while the balloon is at rest.
    let used = match vm.available_kib {
        Some(total) => Some(total.saturating_sub(unused)),
        None if at_rest => Some(vm.actual_kib.saturating_sub(unused)),
        None => None,
    };
    // Measured over the last two sample intervals where possible: timestamps have 1 s
    // resolution and QEMU re-arms its stats timer after each answer, so one interval of
    // "1 s" can really be 1.9 s; over two intervals that error is halved.
    let sample = match (used, h.used_kib, h.used_before_kib) {
        (Some(used), Some(_), Some(before)) => {
            Some((i128::from(used) - i128::from(before)) / i128::from(dt_s.saturating_add(h.last_step_s).max(1)))
        }
        (Some(used), Some(prev), None) => Some((i128::from(used) - i128::from(prev)) / i128::from(dt_s.max(1))),
        _ => None,
    };
    if let Some(sample) = sample {
        let rate = i128::from(h.consumption_kib_s);
        let next = if sample >= rate {
            sample
        } else {
            let fall = (rate - sample.max(0)) * i128::from(RATE_DECAY_PCT);
            rate - (fall + 99) / 100
        };
        h.consumption_kib_s = clamp_to_u64(next);
    }
    h.used_before_kib = h.used_kib;
    h.used_kib = used;
    h.last_step_s = dt_s;
    if let (true, Some(total)) = (at_rest, vm.available_kib) {
        let offset = i128::from(vm.actual_kib) - i128::from(total);
        h.size_offset_kib = Some(i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX }));
    }
}

/// Growth of a cumulative counter since the previous sample; 0 if unknown or reset.
fn counter_delta(now: Option<u64>, prev: Option<u64>) -> u64 {
    match (now, prev) {
        (Some(now), Some(prev)) => now.saturating_sub(prev),
        _ => 0,
    }
}

fn clamp_to_u64(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}
