//! Whether the modem line can be used.

/// Whether the modem line can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineStatus {
    /// Not started yet, or initialising.
    Starting,
    /// Initialised; calls can be made and answered.
    InService,
    /// The modem did not initialise; why, in words. The provider keeps retrying.
    OutOfService(String),
    /// Stopped.
    Stopped,
}
