//! A VM's current problem, as the backends log it: at warning level when it starts (or
//! changes), at debug level while it lasts, and once at info level when the VM is served
//! normally again. A problem that lasts must not fill the log every interval.

use std::fmt;

use crate::text::VmName;

/// The kind of problem last logged for one VM (`K` tells problems apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Complaint<K>(Option<K>);

impl<K: Copy + PartialEq> Complaint<K> {
    pub const NONE: Complaint<K> = Complaint(None);

    /// Logs `problem` of kind `kind` for `name`.
    pub fn report(&mut self, kind: K, name: &VmName, problem: fmt::Arguments<'_>) {
        if self.0 == Some(kind) {
            log::debug!("{name}: {problem}");
        } else {
            log::warn!("{name}: {problem}; skipping it");
            self.0 = Some(kind);
        }
    }

    /// Whether a problem is being reported (the VM has not been served since).
    pub fn is_active(&self) -> bool {
        self.0.is_some()
    }

    /// The VM was served without trouble: say so once if a problem had been logged.
    pub fn resolved(&mut self, name: &VmName) {
        if self.0.take().is_some() {
            log::info!("{name}: served normally again");
        }
    }
}

impl<K> Default for Complaint<K> {
    fn default() -> Self {
        Complaint(None)
    }
}
