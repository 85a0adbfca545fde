//! The host's side of the AT conversation, without I/O: what the modem's bytes say ([`Reader`]), and
//! what each of those things and each request means for the call on the line (`line`, the call
//! logic the provider's task drives). The provider (`crate::provider`) owns the stream and the
//! commands in flight; everything here is synchronous, takes the time as an argument and is tested
//! without a runtime.

pub(crate) mod line;
mod reader;

pub use self::reader::{Final, Reader, Response, classify};
