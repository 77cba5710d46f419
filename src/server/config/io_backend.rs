//! `io`: how the event loops talk to the kernel, epoll (through `mio`) or
//! io_uring, and the names the configuration, the `--io` flag and `stats`
//! give them.

use serde::Deserialize;

/// How the event loops talk to the kernel.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// `mio` over epoll: readiness, then `recv` and `send` per socket.
    #[default]
    Epoll,
    /// io_uring: multishot accept and receive into a ring of provided
    /// buffers, and every send of an iteration in one `io_uring_enter`.
    Uring,
}

impl IoBackend {
    /// The name the configuration, the flag and `stats` use.
    pub fn name(self) -> &'static str {
        match self {
            IoBackend::Epoll => "epoll",
            IoBackend::Uring => "uring",
        }
    }

    /// Parses `epoll` or `uring`.
    pub fn parse(text: &str) -> Option<IoBackend> {
        match text {
            "epoll" => Some(IoBackend::Epoll),
            "uring" => Some(IoBackend::Uring),
            _ => None,
        }
    }
}
