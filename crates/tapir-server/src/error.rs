//! Every failure as one JSON body: a stable code, a message, and the HTTP status that goes with it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tapir::Error;
pub use tapir_api::ErrorBody;

/// An error response.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with its own code.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }

    /// No valid bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (log on with POST /v1/sessions)",
        )
    }

    /// A body or parameter that does not parse.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

/// The HTTP status for an engine error: 404 for handles and lines the session does not have (whether
/// they never existed or belong to another session), 409 for "not now", 403 for "not yours", 400 for
/// bad input, 422 for "never" (the line cannot do it: the request can never succeed there, so it is the
/// client's to change, not a failure of the service), 502 when the switch failed it, 503 when a
/// resource or provider is not available.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::InvalidCallHandle
        | Error::InvalidLineHandle
        | Error::InvalidLine(_)
        | Error::InvalidAddressId
        | Error::TargetNotFound => StatusCode::NOT_FOUND,
        Error::NotOwner => StatusCode::FORBIDDEN,
        Error::InvalidCallState { .. }
        | Error::CallUnavailable
        | Error::InUse
        | Error::ConferenceFull
        | Error::NoConference => StatusCode::CONFLICT,
        Error::InvalidParameter { .. }
        | Error::InvalidAddress { .. }
        | Error::InvalidDialString(_)
        | Error::DialModifierUnsupported(_)
        | Error::InvalidMediaMode
        | Error::InvalidPrivilege
        | Error::TargetSelf
        | Error::UnknownProfile { .. } => StatusCode::BAD_REQUEST,
        Error::OperationUnavailable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::OperationFailed { .. } | Error::ProviderFault { .. } => StatusCode::BAD_GATEWAY,
        Error::ProviderTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::SessionEnded => StatusCode::GONE,
        Error::ResourceUnavailable { .. }
        | Error::ProviderUnavailable { .. }
        | Error::SessionLimit { .. }
        | Error::NoServiceAvailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::new(status_of(&e), e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
