//! arcly-smol: runs arcly-stream's sans-IO sessions on smol and async-io.
//!
//! The same shape as `arcly-tokio`, in smol's terms: [`drive_stream`] moves
//! bytes between an `Async<TcpStream>` and a
//! [`Conductor`](arcly_core::session::Conductor), [`serve`] accepts with a
//! limit and shuts down gracefully, [`FsStorage`] stores objects atomically,
//! and the extension traits take smol's futures. No protocol logic lives here.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod datagram;
mod driver;
mod listener;
mod storage;
mod tap;
mod traits;

pub use datagram::drive_endpoint;
pub use driver::{drive_stream, Clock, DriverConfig};
pub use listener::{serve, ListenerConfig, Log};
pub use storage::FsStorage;
pub use tap::drive_taps;
pub use traits::{MediaSink, MediaSource, PublishSink, StorageBackend, SubscriptionStream};

/// Triggers shutdown: every [`ShutdownSignal`] resolves once it fires.
#[derive(Debug)]
pub struct Shutdown {
    tx: smol::channel::Sender<()>,
    rx: smol::channel::Receiver<()>,
}

/// Resolves when shutdown was triggered.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: smol::channel::Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A trigger that has not fired.
    pub fn new() -> Self {
        let (tx, rx) = smol::channel::bounded(1);
        Shutdown { tx, rx }
    }

    /// A signal to hand to a listener or connection.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.rx.clone(),
        }
    }

    /// Fires.
    pub fn trigger(&self) {
        self.tx.close();
    }
}

impl ShutdownSignal {
    /// Whether shutdown has fired.
    pub fn is_triggered(&self) -> bool {
        self.rx.is_closed()
    }

    /// Waits until shutdown fires.
    pub async fn wait(self) {
        // The channel never carries a message: `recv` ends when it closes.
        let _ = self.rx.recv().await;
    }
}
