//! The byte stream to a modem, and its DTR line.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};

/// A byte stream to a modem.
pub trait Port: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Port for T {}

/// Opens the stream to the modem; called at start and again when an out-of-service line is retried.
pub type Connector =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = io::Result<Box<dyn Port>>> + Send>> + Send + Sync>;

/// Lowers (`false`) or raises (`true`) DTR, where the stream has one.
pub type DtrControl = Arc<dyn Fn(bool) + Send + Sync>;

/// The two halves of the modem's stream.
pub(super) type Halves = (ReadHalf<Box<dyn Port>>, WriteHalf<Box<dyn Port>>);
