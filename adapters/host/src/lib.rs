//! arcly-host: what the executor adapters share that touches the system,
//! written once: the host [`Clock`] and [`FsStore`], a filesystem object
//! store on `std::fs`. The rules a driver follows (output, reading,
//! deliveries, limits) are sans-IO and live in `arcly_core::host`; this
//! crate holds only the system calls they have in common. Each adapter
//! wraps these in its runtime's terms (an async `StorageBackend` runs
//! [`FsStore`]'s calls on its runtime's blocking pool).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod fs;

pub use clock::Clock;
pub use fs::FsStore;
