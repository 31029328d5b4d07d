//! The link figures of live RTSP sessions for the stats API: per session
//! its stream, role, peer, transport (interleaved TCP or UDP) and packet
//! counts, loss included. Sessions write their figures at most once a
//! second, never per packet; the API reads them on request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arcly_core::engine::{LinkReport, LinkSource};

/// Live RTSP sessions' figures, shared by the sessions and the API.
#[derive(Clone, Debug, Default)]
pub struct RtspStats(Arc<Mutex<BTreeMap<u64, LinkReport>>>);

impl RtspStats {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn update(&self, report: LinkReport) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(report.id, report);
        }
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&id);
        }
    }
}

impl LinkSource for RtspStats {
    fn links(&self) -> Vec<LinkReport> {
        match self.0.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }
}
