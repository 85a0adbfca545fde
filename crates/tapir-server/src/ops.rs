//! The application API's operations by name: a call's (`POST /v1/calls/{call}/{op}`) and a line
//! open's (`POST /v1/line-opens/{line_handle}/{op}`), each name the one the gate's tables give it
//! (`CallOperation`, `AddressOperation`, `SessionOperation` in `tapir-core`), each to the session
//! method it stands for, with the fields of its body. The matches on the gate's enums are
//! exhaustive: an operation added to a table without an answer here does not compile.

use axum::body::Bytes;
use axum::http::StatusCode;
use tapir::core::dial::DialString;
use tapir::core::gate::{AddressOperation, CallOperation, SessionOperation};
use tapir::core::params::{
    self, CompletionMode, DigitMode, ForwardCondition, Forwarding, ParkMode, PickupTarget,
    TransferMode,
};
use tapir::core::privilege::CallPrivilege;
use tapir::{CallHandle, LineHandle, MakeCallParams, Session};
use tapir_api as wire;

use crate::api::{call_dto, line_status, parse_call, to_json};
use crate::error::ApiError;

/// Rings before a no-answer rule forwards, when the rule does not say.
pub const DEFAULT_NO_ANSWER_RINGS: u32 = 3;

/// Why an operation did not happen: the request was not one (not counted as an operation), or the
/// engine refused or failed it (counted by its code).
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad input, unknown operation.
    Request(ApiError),
    /// The engine's error.
    Engine(tapir::Error),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self::Request(e)
    }
}

impl From<tapir::Error> for Failure {
    fn from(e: tapir::Error) -> Self {
        Self::Engine(e)
    }
}

/// A successful operation's status and JSON body.
pub(crate) type Done = Result<(StatusCode, Bytes), Failure>;

fn answer(status: StatusCode, v: &impl serde::Serialize) -> Done {
    Ok((status, to_json(v)))
}

/// The call as it is after the operation.
fn the_call(s: &Session, call: CallHandle) -> Done {
    answer(StatusCode::OK, &call_dto(s, call)?)
}

/// Calls as they are now, in the order given.
fn the_calls(s: &Session, calls: Vec<CallHandle>) -> Done {
    let calls = calls
        .into_iter()
        .map(|c| call_dto(s, c))
        .collect::<Result<Vec<_>, _>>()?;
    answer(StatusCode::OK, &calls)
}

/// A call the operation created.
fn new_call(s: &Session, call: CallHandle) -> Done {
    answer(StatusCode::CREATED, &call_dto(s, call)?)
}

fn conference(s: &Session, status: StatusCode, (c, k): (CallHandle, CallHandle)) -> Done {
    let setup = wire::ConferenceSetup {
        conference: call_dto(s, c)?,
        consultation: call_dto(s, k)?,
    };
    answer(status, &setup)
}

fn needs<T>(value: Option<T>, op: &str, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("{op}: the body needs the field {field:?}")))
}

/// The names of the operations on one call beyond the gate's: aliases and session operations.
pub const COMPLETE_CONFERENCE: &str = "complete-conference";

/// `POST /v1/calls/{call}/{op}`.
pub(crate) async fn call_op(
    s: &Session,
    h: CallHandle,
    op: &str,
    mut b: wire::CallOpRequest,
) -> Done {
    if let Ok(gated) = op.parse::<CallOperation>() {
        return gated_call_op(s, h, gated, b).await;
    }
    if op == COMPLETE_CONFERENCE {
        b.transfer_mode = Some(wire::TransferMode::Conference);
        return gated_call_op(s, h, CallOperation::CompleteTransfer, b).await;
    }
    match op.parse::<SessionOperation>() {
        Ok(SessionOperation::SetCallPrivilege) => {
            let privilege = match needs(b.privilege, op, "privilege")? {
                wire::CallPrivilege::Owner => CallPrivilege::Owner,
                wire::CallPrivilege::Monitor => CallPrivilege::Monitor,
            };
            s.set_call_privilege(h, privilege)?;
            the_call(s, h)
        }
        // Line operations, or routes of their own (`conference-calls` is a GET).
        _ => Err(no_operation("call", op)),
    }
}

fn no_operation(on: &str, op: &str) -> Failure {
    Failure::Request(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {on} operation {op:?}"),
    ))
}

async fn gated_call_op(
    s: &Session,
    h: CallHandle,
    op: CallOperation,
    b: wire::CallOpRequest,
) -> Done {
    use CallOperation as Op;
    let name = op.name();
    match op {
        Op::Accept => s.accept(h).await?,
        Op::Answer => s.answer(h).await?,
        Op::Reject => s.reject(h).await?,
        Op::Redirect => {
            s.redirect(h, &needs(b.destination, name, "destination")?)
                .await?
        }
        Op::Drop => s.drop_call(h).await?,
        Op::Dial => s.dial(h, &needs(b.digits, name, "digits")?).await?,
        Op::Hold => s.hold(h).await?,
        Op::Unhold => s.unhold(h).await?,
        Op::SwapHold => {
            let held = parse_call(&needs(b.held, name, "held")?)?;
            s.swap_hold(h, held).await?;
        }
        Op::BlindTransfer => {
            s.blind_transfer(h, &needs(b.destination, name, "destination")?)
                .await?;
        }
        Op::SetupTransfer => return new_call(s, s.setup_transfer(h).await?),
        Op::CompleteTransfer => {
            let consultation = parse_call(&needs(b.consultation, name, "consultation")?)?;
            let mode = match b.transfer_mode.unwrap_or(wire::TransferMode::Transfer) {
                wire::TransferMode::Transfer => TransferMode::Transfer,
                wire::TransferMode::Conference => TransferMode::Conference,
            };
            let parent = s.complete_transfer(h, consultation, mode).await?;
            return the_call(s, parent.unwrap_or(h));
        }
        Op::SetupConference => {
            return conference(s, StatusCode::CREATED, s.setup_conference(h).await?);
        }
        Op::PrepareAddToConference => return new_call(s, s.prepare_add_to_conference(h).await?),
        Op::AddToConference => {
            let consultation = parse_call(&needs(b.consultation, name, "consultation")?)?;
            s.add_to_conference(h, consultation).await?;
        }
        Op::RemoveFromConference => s.remove_from_conference(h).await?,
        Op::Park => {
            let mode = match b.orbit {
                Some(o) => ParkMode::Directed(o),
                None => ParkMode::NonDirected,
            };
            let orbit = s.park(h, mode).await?;
            let parked = wire::Parked {
                orbit,
                call: call_dto(s, h).ok(),
            };
            return answer(StatusCode::OK, &parked);
        }
        Op::CompleteCall => {
            let mode = match needs(b.completion_mode, name, "completion_mode")? {
                wire::CompletionMode::CampOn => CompletionMode::CampOn,
                wire::CompletionMode::Callback => CompletionMode::Callback,
                wire::CompletionMode::Intrude => CompletionMode::Intrude,
                wire::CompletionMode::Message => CompletionMode::Message,
            };
            let completion = s.complete_call(h, mode).await?;
            let requested = wire::CompletionRequested {
                completion,
                call: call_dto(s, h).ok(),
            };
            return answer(StatusCode::OK, &requested);
        }
        Op::GenerateDigits => {
            let digits = needs(b.digits, name, "digits")?;
            s.generate_digits(h, &digits, digit_mode(b.digit_mode))
                .await?;
        }
        Op::MonitorDigits => {
            let mode = b.enabled.unwrap_or(true).then(|| digit_mode(b.digit_mode));
            s.monitor_digits(h, mode).await?;
        }
        Op::SecureCall => s.secure_call(h).await?,
        Op::Handoff => s.handoff(h, &needs(b.application, name, "application")?)?,
    }
    the_call(s, h)
}

fn digit_mode(mode: Option<wire::DigitMode>) -> DigitMode {
    match mode.unwrap_or(wire::DigitMode::Dtmf) {
        wire::DigitMode::Dtmf => DigitMode::Dtmf,
        wire::DigitMode::Pulse => DigitMode::Pulse,
    }
}

/// `GET /v1/calls/{call}/conference-calls`.
pub(crate) fn conference_calls(s: &Session, h: CallHandle) -> Done {
    the_calls(s, s.conference_calls(h)?)
}

/// `POST /v1/line-opens/{line_handle}/{op}`.
pub(crate) async fn line_op(
    s: &Session,
    line: LineHandle,
    op: &str,
    b: wire::LineOpRequest,
) -> Done {
    if let Ok(gated) = op.parse::<AddressOperation>() {
        return address_op(s, line, gated, b).await;
    }
    match op.parse::<SessionOperation>() {
        Ok(SessionOperation::NewCalls) => the_calls(s, s.new_calls(line)?),
        Ok(SessionOperation::CancelCallCompletion) => {
            let completion = needs(b.completion, op, "completion")?;
            s.cancel_call_completion(line, completion).await?;
            Ok((StatusCode::NO_CONTENT, Bytes::new()))
        }
        // Call operations, or routes of their own (line status is `GET /v1/line-opens/{handle}`).
        _ => Err(no_operation("line", op)),
    }
}

async fn address_op(
    s: &Session,
    line: LineHandle,
    op: AddressOperation,
    b: wire::LineOpRequest,
) -> Done {
    use AddressOperation as Op;
    let name = op.name();
    match op {
        Op::MakeCall => {
            let params = MakeCallParams {
                destination: b.destination,
                translate: b.translate,
                ..MakeCallParams::default()
            };
            new_call(s, s.make_call_with(line, params).await?)
        }
        Op::Unpark => {
            let orbit = needs(b.orbit, name, "orbit")?;
            new_call(s, s.unpark(line, &orbit).await?)
        }
        Op::Pickup => {
            let target = match (b.station, b.group) {
                (Some(st), None) => PickupTarget::Directed(st),
                (None, Some(g)) => PickupTarget::Group(g),
                _ => {
                    return Err(ApiError::bad_request(
                        "pickup needs exactly one of station and group",
                    )
                    .into());
                }
            };
            new_call(s, s.pickup(line, target).await?)
        }
        Op::Forward => {
            let forwarding = forwarding(&b)?;
            s.forward(line, forwarding).await?;
            answer(StatusCode::OK, &line_status(s, line).await?)
        }
        Op::SetupConference => {
            conference(s, StatusCode::CREATED, s.setup_conference_on(line).await?)
        }
    }
}

/// The forwarding a `forward` body asks for; every destination must be a dial string.
fn forwarding(b: &wire::LineOpRequest) -> Result<Forwarding, Failure> {
    let mut rules = Vec::with_capacity(b.rules.len());
    for rule in &b.rules {
        let condition = match rule.condition {
            wire::ForwardCondition::Unconditional => ForwardCondition::Unconditional,
            wire::ForwardCondition::Busy => ForwardCondition::Busy,
            wire::ForwardCondition::NoAnswer => ForwardCondition::NoAnswer {
                rings: rule.rings.unwrap_or(DEFAULT_NO_ANSWER_RINGS),
            },
        };
        let to = DialString::parse_destination(&rule.destination)
            .map_err(tapir::Error::InvalidDialString)?;
        rules.push((condition, to));
    }
    Ok(params::Forwarding {
        do_not_disturb: b.do_not_disturb,
        rules,
    })
}
