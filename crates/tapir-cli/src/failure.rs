//! How a command fails: what to print, and the exit code that says what kind of failure it was.

use tapir_client::ClientError;

/// What the exit code says.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Exit {
    /// 1: the service refused or could not do the request (wrong state, not the owner, bad input).
    Refused = 1,
    /// 2: the command line is wrong (clap's own code as well).
    Usage = 2,
    /// 3: tapird cannot be reached, or answered something unexpected.
    Unreachable = 3,
    /// 4: log-on refused (unknown application, wrong secret, profile not allowed).
    Unauthorized = 4,
    /// 5: no such call, line or route.
    NotFound = 5,
    /// 6: the service or a provider failed (HTTP 5xx).
    ServiceFailed = 6,
}

/// The failure of a command: what to print and the exit code.
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let exit = match &e {
            ClientError::Api { status: 401, .. } => Exit::Unauthorized,
            ClientError::Api {
                status: 403, code, ..
            } if code == "forbidden" => Exit::Unauthorized,
            ClientError::Api { status: 404, .. } => Exit::NotFound,
            ClientError::Api { status, .. } if *status >= 500 => Exit::ServiceFailed,
            ClientError::Api { .. } => Exit::Refused,
            ClientError::BadUrl(_) => Exit::Usage,
            _ => Exit::Unreachable,
        };
        Failure {
            exit,
            message: e.to_string(),
        }
    }
}

/// A wrong command line.
pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        exit: Exit::Usage,
        message: message.into(),
    }
}

/// No such call, line or route.
pub(crate) fn not_found(message: impl Into<String>) -> Failure {
    Failure {
        exit: Exit::NotFound,
        message: message.into(),
    }
}

/// What a command comes to.
pub(crate) type Outcome = Result<(), Failure>;
