//! The tapir call-control engine.
//!
//! Applications log on ([`Engine::logon`]) and get a [`Session`]; through it they list and open lines,
//! place and answer calls, and read one ordered stream of [`SessionEvent`]s. Service providers plug in
//! behind [`tapir_provider::Provider`] and do the switching; the engine owns no switching logic.
//!
//! The engine keeps the contracts in `docs/ARCHITECTURE.md`:
//! - **two identities**: each session gets its own [`CallHandle`] for a call; the provider's
//!   [`CallId`] is the same for everyone;
//! - **no event before its handle**: the first event naming a handle is [`Event::NewCall`], and a
//!   handle from [`Session::make_call`] is returned before any event names it;
//! - **one order per call**, and gap-free sequence numbers per session;
//! - **completion means effect**: an operation returns when the provider has done it;
//! - **never vs not now**: [`Error::OperationUnavailable`] vs [`Error::InvalidCallState`];
//! - **nothing leaks**: handles end with deallocation or log-off, calls when idle and unheld.
//!
//! ```no_run
//! use tapir::{Engine, Event, OpenOptions};
//! # async fn demo(provider: impl tapir_provider::Provider) -> Result<(), tapir::Error> {
//! let engine = Engine::builder().provider(provider).build().await?;
//! let app = engine.logon("softphone").await?;
//! let line = app.lines()[0].id;
//! let line = app.open_line(line, OpenOptions::owner()).await?;
//! let call = app.make_call(line, Some("200")).await?;
//! while let Some(e) = app.next_event().await {
//!     println!("{}: {:?}", e.seq, e.event);
//! #   break;
//! }
//! app.drop_call(call).await?;
//! app.deallocate(call)?;
//! # Ok(()) }
//! ```

mod call;
#[cfg(feature = "conformance")]
pub mod conformance;
mod detail;
mod dispatch;
mod engine;
mod event;
mod guard;
mod handles;
mod holds;
mod inbox;
mod inner;
mod line;
mod logon;
mod opens;
pub mod profile;
mod requests;
mod routing;
mod session;
mod session_state;
pub mod status;
mod sync;
pub mod translate;

pub use call::{CallInfoView, CallStatus};
pub use engine::{DEFAULT_EVENT_QUEUE_CAPACITY, Engine, EngineBuilder, EngineStats};
pub use event::{Event, LineEvent, SessionEvent};
pub use guard::DEFAULT_PROVIDER_DEADLINE;
pub use handles::{CallHandle, LineHandle, SessionId};
pub use line::LineInfo;
pub use profile::{LogonOptions, Profile, Service, SessionMode};
pub use session::{MakeCallParams, OpenOptions, Session};
pub use status::{AddressStatus, LineStatus, ServiceState, StatusRow};
pub use tapir_core::{self as core, CallId, Error};
pub use tapir_provider as provider;
