//! Why ferry could not start: each failure of [`super::start`] with what it was doing, so
//! the one log line before exit names the file, address or table, and `main` can tell a
//! store that needs an operator (exit 3) from a failure a restart may cure (exit 1).

use crate::store::StoreError;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open store in {dir}: {source}")]
    Store {
        dir: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot read retained messages from the store: {0}")]
    LoadRetained(#[source] StoreError),
    #[error("cannot delete retained messages beyond the limits: {0}")]
    DropRetained(#[source] StoreError),
    #[error("cannot load the [auth] password file: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        what: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[cfg(feature = "tls")]
    #[error("{0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    /// A blocking store task panicked or was cancelled.
    #[error("{what} task failed: {reason}")]
    Task { what: &'static str, reason: String },
}

impl StartError {
    /// The store is damaged or missing where it should be: restarting cannot help.
    pub fn needs_operator(&self) -> bool {
        matches!(self, StartError::Store { source, .. } if source.needs_operator())
    }

    pub(crate) fn listen(
        what: impl Into<String>,
        addr: SocketAddr,
        source: std::io::Error,
    ) -> Self {
        StartError::Listen {
            what: what.into(),
            addr,
            source,
        }
    }
}
