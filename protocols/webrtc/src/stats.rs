//! The link figures of live WebRTC peers for the stats API: stream, role,
//! peer address, datagrams and bytes each way. Peers write them at most
//! once a second; the API reads them on request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arcly_core::engine::{LinkReport, LinkSource};

/// Live WebRTC peers' figures, shared by the peers and the API.
#[derive(Clone, Debug, Default)]
pub struct WebRtcStats(Arc<Mutex<BTreeMap<u64, LinkReport>>>);

impl WebRtcStats {
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

impl LinkSource for WebRtcStats {
    fn links(&self) -> Vec<LinkReport> {
        match self.0.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }
}
