//! The OpenAPI 3 document served at `/openapi.json`: the schemas are generated from the wire types
//! of `tapir-api` (utoipa), the operations from [`endpoints`]: the fixed routes of [`ENDPOINTS`], and
//! one path per operation of the gate's tables (`CallOperation`, `AddressOperation`,
//! `SessionOperation`), each described by an exhaustive match so that a new operation needs its row.

use std::borrow::Cow;
use std::sync::OnceLock;

use tapir::core::gate::{AddressOperation, CallOperation, SessionOperation};

use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};

/// What an endpoint answers with on success.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// No body (204).
    Nothing,
    /// One value of the named schema.
    One(&'static str),
    /// An array of the named schema.
    Many(&'static str),
    /// Prometheus' OpenMetrics text (`/metrics`).
    Text,
    /// A JSON document without a schema of its own.
    Json,
    /// A WebSocket upgrade (101).
    WebSocket,
}

/// One route of the API.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, with `{name}` parameters.
    pub path: Cow<'static, str>,
    /// What it does.
    pub summary: &'static str,
    /// The request body's schema, if it takes one.
    pub body: Option<&'static str>,
    /// The success status.
    pub status: u16,
    /// The success body.
    pub answer: Answer,
    /// Whether it needs a bearer token.
    pub token: bool,
}

const fn ep(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
    status: u16,
    answer: Answer,
) -> Endpoint {
    Endpoint {
        method,
        path: Cow::Borrowed(path),
        summary,
        body,
        status,
        answer,
        token: true,
    }
}

const fn open(mut e: Endpoint) -> Endpoint {
    e.token = false;
    e
}

/// The routes of the API that are not one operation each (those come from the gate's tables).
pub const ENDPOINTS: &[Endpoint] = &[
    open(ep(
        "GET",
        "/healthz",
        "Liveness.",
        None,
        200,
        Answer::One("Health"),
    )),
    open(ep(
        "GET",
        "/metrics",
        "Prometheus (OpenMetrics) text: sessions, calls by state, operations by result and their latency by operation, events delivered, queue depths.",
        None,
        200,
        Answer::Text,
    )),
    open(ep(
        "GET",
        "/openapi.json",
        "This document.",
        None,
        200,
        Answer::Json,
    )),
    open(ep(
        "POST",
        "/v1/sessions",
        "Log on: the session's identifier and a bearer token for every later request.",
        Some("LogonRequest"),
        201,
        Answer::One("LogonResponse"),
    )),
    ep(
        "GET",
        "/v1/session",
        "The log-on's session.",
        None,
        200,
        Answer::One("SessionInfo"),
    ),
    ep(
        "DELETE",
        "/v1/session",
        "Log off; the token is answered 410 from then on (its events stay readable).",
        None,
        204,
        Answer::Nothing,
    ),
    ep(
        "GET",
        "/v1/lines",
        "The lines the session may use.",
        None,
        200,
        Answer::Many("Line"),
    ),
    ep(
        "POST",
        "/v1/line-opens",
        "Open a line with a privilege.",
        Some("OpenLineRequest"),
        201,
        Answer::One("LineOpen"),
    ),
    ep(
        "DELETE",
        "/v1/line-opens/{handle}",
        "Close a line open.",
        None,
        204,
        Answer::Nothing,
    ),
    ep(
        "GET",
        "/v1/calls",
        "The session's calls.",
        None,
        200,
        Answer::Many("Call"),
    ),
    ep(
        "POST",
        "/v1/calls",
        "Make a call; returns when the switch has it (dialing, proceeding or ringback).",
        Some("MakeCallRequest"),
        201,
        Answer::One("Call"),
    ),
    ep(
        "POST",
        "/v1/calls/unpark",
        "Take a parked call from its orbit.",
        Some("RetrieveRequest"),
        201,
        Answer::One("Call"),
    ),
    ep(
        "POST",
        "/v1/calls/pickup",
        "Pick up a call ringing at a station or in a group.",
        Some("RetrieveRequest"),
        201,
        Answer::One("Call"),
    ),
    ep(
        "GET",
        "/v1/calls/{call}",
        "One call, with the features available now.",
        None,
        200,
        Answer::One("Call"),
    ),
    ep(
        "DELETE",
        "/v1/calls/{call}",
        "Deallocate the call handle.",
        None,
        204,
        Answer::Nothing,
    ),
    ep(
        "GET",
        "/v1/line-opens/{handle}",
        "The line's status: in service or why not, its opens, each address's calls by class.",
        None,
        200,
        Answer::One("LineStatus"),
    ),
    ep(
        "GET",
        "/v1/status",
        "The status table.",
        None,
        200,
        Answer::Many("StatusRow"),
    ),
    ep(
        "GET",
        "/v1/routes",
        "The route table.",
        None,
        200,
        Answer::One("Routes"),
    ),
    ep(
        "PUT",
        "/v1/routes/default",
        "Set the default route (kept across restarts).",
        Some("DefaultRouteRequest"),
        200,
        Answer::One("Routes"),
    ),
    ep(
        "PUT",
        "/v1/routes/{class}",
        "Route a call class to an application (kept across restarts).",
        Some("RouteRequest"),
        200,
        Answer::One("Routes"),
    ),
    ep(
        "DELETE",
        "/v1/routes/{class}",
        "Clear a class's route (kept across restarts).",
        None,
        200,
        Answer::One("Routes"),
    ),
    ep(
        "POST",
        "/v1/translate",
        "Translate an address with the session's location.",
        Some("TranslateRequest"),
        200,
        Answer::One("Translated"),
    ),
    ep(
        "GET",
        "/v1/snapshot",
        "The session's line opens and calls, and the event sequence number they include.",
        None,
        200,
        Answer::One("Snapshot"),
    ),
    ep(
        "GET",
        "/v1/cdrs",
        "Call detail records, newest first: filter by since/until (RFC 3339), number, call_id, \
         disposition; page with before/limit; format json (a CdrPage), csv or jsonl. Applications \
         limited to some profiles see only their lines' records.",
        None,
        200,
        Answer::One("CdrPage"),
    ),
    ep(
        "GET",
        "/v1/events",
        "WebSocket: every event after `after` (schema Event), in order, then each new one; a trimmed \
         position or the end of the log-on is a StreamControl message.",
        None,
        101,
        Answer::WebSocket,
    ),
    ep(
        "GET",
        "/v1/commands",
        "WebSocket: the API's requests without an HTTP exchange each. Send \
         {\"id\":ID,\"method\":\"POST\",\"path\":\"/v1/calls\",\"body\":{…},\"request_id\":\"…\"}; \
         the reply is {\"id\":ID,\"status\":S,\"body\":{…}}, the status and body of the same request \
         over HTTP (a body that is not JSON as the string \"text\"). Requests run concurrently; the \
         socket acts for the log-on that opened it.",
        None,
        101,
        Answer::WebSocket,
    ),
];

/// Every route of the API: [`ENDPOINTS`], then a path for each operation on a call and on a line.
pub fn endpoints() -> &'static [Endpoint] {
    static ALL: OnceLock<Vec<Endpoint>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = ENDPOINTS.to_vec();
        let call = |name: &str, (summary, status, answer): OpDoc| Endpoint {
            method: "POST",
            path: Cow::Owned(format!("/v1/calls/{{call}}/{name}")),
            summary,
            body: Some("CallOpRequest"),
            status,
            answer,
            token: true,
        };
        all.extend(CallOperation::ALL.map(|op| call(op.name(), call_op_doc(op))));
        all.push(call(
            crate::ops::COMPLETE_CONFERENCE,
            (
                "Complete a consultation call as a three-way conference: complete-transfer with \
                 transfer_mode conference. Returns the conference.",
                200,
                Answer::One("Call"),
            ),
        ));
        let line = |name: &str, (summary, status, answer): OpDoc| Endpoint {
            method: "POST",
            path: Cow::Owned(format!("/v1/line-opens/{{handle}}/{name}")),
            summary,
            body: Some("LineOpRequest"),
            status,
            answer,
            token: true,
        };
        all.extend(AddressOperation::ALL.map(|op| line(op.name(), address_op_doc(op))));
        for op in SessionOperation::ALL {
            let name = op.name();
            match op {
                SessionOperation::SetCallPrivilege => all.push(call(
                    name,
                    (
                        "Change this session's privilege on the call (privilege: owner or \
                         monitor); the sole owner of a live call may not become a monitor.",
                        200,
                        Answer::One("Call"),
                    ),
                )),
                SessionOperation::ConferenceCalls => all.push(Endpoint {
                    method: "GET",
                    body: None,
                    ..call(
                        name,
                        (
                            "The calls of the conference this call is the parent or a party of, \
                             that this session holds: the parent first, then the parties.",
                            200,
                            Answer::Many("Call"),
                        ),
                    )
                }),
                SessionOperation::NewCalls => all.push(Endpoint {
                    body: None,
                    ..line(
                        name,
                        (
                            "Take up the calls already on the line that this session holds no \
                             handle for: a monitor handle each, announced by new_call then its \
                             state on the event stream (TAPI lineGetNewCalls).",
                            200,
                            Answer::Many("Call"),
                        ),
                    )
                }),
                SessionOperation::CancelCallCompletion => all.push(line(
                    name,
                    (
                        "Cancel a call-completion request of this line (completion: the ID \
                         complete-call returned).",
                        204,
                        Answer::Nothing,
                    ),
                )),
                // Routes of their own, among ENDPOINTS.
                SessionOperation::LineStatus | SessionOperation::Deallocate => {}
            }
        }
        all
    })
}

/// What an operation's row says: summary, success status, success body.
type OpDoc = (&'static str, u16, Answer);

fn call_op_doc(op: CallOperation) -> OpDoc {
    use CallOperation as Op;
    let call = Answer::One("Call");
    match op {
        Op::Accept => ("Claim an offered call so that it alerts.", 200, call),
        Op::Answer => (
            "Answer an offered or accepted call; returns it connected.",
            200,
            call,
        ),
        Op::Reject => ("Refuse an offered call.", 200, call),
        Op::Redirect => (
            "Send an offered call elsewhere before answering (destination).",
            200,
            call,
        ),
        Op::Drop => ("Hang up; returns the call idle.", 200, call),
        Op::Dial => (
            "Dial (more) digits on a call in dial tone or dialing (digits).",
            200,
            call,
        ),
        Op::Hold => (
            "Put the call on hold; returns once the switch has held it.",
            200,
            call,
        ),
        Op::Unhold => ("Take the call off hold.", 200, call),
        Op::SwapHold => ("Swap this active call with a held one (held).", 200, call),
        Op::BlindTransfer => (
            "Transfer the call without consultation (destination).",
            200,
            call,
        ),
        Op::SetupTransfer => (
            "Hold the call pending transfer and make a consultation call in dial tone; returns \
             the consultation call.",
            201,
            call,
        ),
        Op::CompleteTransfer => (
            "Complete a consultation transfer (consultation; transfer_mode transfer, the default, \
             or conference, which returns the conference).",
            200,
            call,
        ),
        Op::SetupConference => (
            "Turn the call into a conference: returns the conference (on hold pending a party) \
             and a consultation call in dial tone; dial it, then add-to-conference.",
            201,
            Answer::One("ConferenceSetup"),
        ),
        Op::PrepareAddToConference => (
            "Hold the conference pending a new party and make a consultation call; returns it.",
            201,
            call,
        ),
        Op::AddToConference => (
            "Add the consultation call (consultation) to the conference.",
            200,
            call,
        ),
        Op::RemoveFromConference => ("Take this party out of its conference.", 200, call),
        Op::Park => (
            "Park the call (orbit; absent: the switch chooses); answers the orbit and the call.",
            200,
            Answer::One("Parked"),
        ),
        Op::CompleteCall => (
            "Ask the switch to complete a call to a busy or unanswered party later \
             (completion_mode); answers the request's ID.",
            200,
            Answer::One("CompletionRequested"),
        ),
        Op::GenerateDigits => (
            "Send digits in-band (digits; digit_mode, DTMF by default).",
            200,
            call,
        ),
        Op::MonitorDigits => (
            "Report the digits detected on the call as digit events on this session's stream \
             (digit_mode; enabled false stops). Monitors may do it too.",
            200,
            call,
        ),
        Op::SecureCall => ("Secure the call against interruption.", 200, call),
        Op::Handoff => (
            "Give the call to another application with the line open (application).",
            200,
            call,
        ),
    }
}

fn address_op_doc(op: AddressOperation) -> OpDoc {
    use AddressOperation as Op;
    match op {
        Op::MakeCall => (
            "Make a call from this line (destination, absent: dial tone; translate); returns when \
             the switch has it. The same as POST /v1/calls.",
            201,
            Answer::One("Call"),
        ),
        Op::Unpark => (
            "Take a parked call from its orbit (orbit).",
            201,
            Answer::One("Call"),
        ),
        Op::Pickup => (
            "Pick up a call ringing at a station (station) or in a group (group).",
            201,
            Answer::One("Call"),
        ),
        Op::Forward => (
            "Replace the address's forwarding: do_not_disturb and rules (condition unconditional, \
             busy or no_answer with rings; destination). Both empty cancel it. Returns the line's \
             status.",
            200,
            Answer::One("LineStatus"),
        ),
        Op::SetupConference => (
            "Set up a conference without a call: returns the conference and a consultation call \
             in dial tone.",
            201,
            Answer::One("ConferenceSetup"),
        ),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tapird",
        description = "The tapir call-control service: log-ons, lines, calls and their operations, \
                       status, routes, address translation, and each log-on's numbered event stream. \
                       Every failure is an ErrorBody with a stable code.",
    ),
    components(schemas(
        tapir_api::LogonRequest,
        tapir_api::LogonResponse,
        tapir_api::DisabledService,
        tapir_api::SessionInfo,
        tapir_api::Line,
        tapir_api::OpenLineRequest,
        tapir_api::LineOpen,
        tapir_api::MakeCallRequest,
        tapir_api::CallOpRequest,
        tapir_api::LineOpRequest,
        tapir_api::ForwardRule,
        tapir_api::ConferenceSetup,
        tapir_api::CompletionRequested,
        tapir_api::LineStatus,
        tapir_api::AddressStatus,
        tapir_api::DigitMode,
        tapir_api::CompletionMode,
        tapir_api::ForwardCondition,
        tapir_api::CallPrivilege,
        tapir_api::LinePrivilege,
        tapir_api::TransferMode,
        tapir_api::RetrieveRequest,
        tapir_api::Parked,
        tapir_api::RouteRequest,
        tapir_api::DefaultRouteRequest,
        tapir_api::TranslateRequest,
        tapir_api::Translated,
        tapir_api::Party,
        tapir_api::Call,
        tapir_api::StatusRow,
        tapir_api::Route,
        tapir_api::Routes,
        tapir_api::Snapshot,
        tapir_api::Health,
        tapir_api::ErrorBody,
        tapir_api::Event,
        tapir_api::EventKind,
        tapir_api::LineEvent,
        tapir_api::StreamControl,
        tapir_api::cdr::Cdr,
        tapir_api::cdr::CdrPage,
    ))
)]
struct Schemas;

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn json_of(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema)))
        .build()
}

/// The string fields whose values come from the engine's name tables (which `tapir-api` does not
/// depend on): each listed in the document with its values.
fn name_tables() -> [(&'static str, &'static str, &'static [&'static str]); 3] {
    use tapir::core::privilege::CallPrivilege;
    use tapir::core::state::CallStateKind;
    [
        ("Call", "state", CallStateKind::NAMES),
        ("Call", "privilege", CallPrivilege::NAMES),
        ("StatusRow", "state", tapir::ServiceState::NAMES),
    ]
}

fn list_values(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for (schema, field, names) in name_tables() {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            continue;
        };
        if let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(field) {
            property.enum_values = Some(names.iter().map(|n| (*n).into()).collect());
        }
    }
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Schemas::openapi();
    list_values(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    for e in endpoints() {
        let mut op = OperationBuilder::new().summary(Some(e.summary));
        for name in e
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        if e.path == "/v1/cdrs" {
            let params: [(&str, &str, Type); 8] = [
                (
                    "since",
                    "Calls that started at or after this RFC 3339 time.",
                    Type::String,
                ),
                (
                    "until",
                    "Calls that started before this RFC 3339 time.",
                    Type::String,
                ),
                (
                    "number",
                    "Part of the caller's, called or connected number.",
                    Type::String,
                ),
                (
                    "call_id",
                    "A call ID (call-7): its records and those linked to it.",
                    Type::String,
                ),
                (
                    "disposition",
                    "answered, busy, no_answer, rejected, failed, picked_up_elsewhere, forwarded, redirected, transferred or parked.",
                    Type::String,
                ),
                ("before", "The next of the previous page.", Type::Integer),
                ("limit", "1 to 1000 records (default 100).", Type::Integer),
                ("format", "json (default), csv or jsonl.", Type::String),
            ];
            for (name, description, kind) in params {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Query)
                        .required(Required::False)
                        .description(Some(description))
                        .schema(Some(ObjectBuilder::new().schema_type(kind))),
                );
            }
        }
        if e.path == "/v1/events" {
            op = op.parameter(
                ParameterBuilder::new()
                    .name("after")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some("The last sequence number the client has (default 0)."))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer))),
            );
        }
        if let Some(body) = e.body {
            // The operations' body is optional (most need none).
            let required = if matches!(body, "CallOpRequest" | "LineOpRequest") {
                Required::False
            } else {
                Required::True
            };
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", json_of(body))
                    .required(Some(required))
                    .build(),
            ));
        }
        let ok = ResponseBuilder::new().description("Done.");
        let ok = match e.answer {
            Answer::Nothing | Answer::WebSocket => ok,
            Answer::One(schema) => ok.content("application/json", json_of(schema)),
            Answer::Many(schema) => ok.content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(
                        ArrayBuilder::new().items(Ref::from_schema_name(schema)),
                    ))
                    .build(),
            ),
            Answer::Text => ok.content(
                "application/openmetrics-text",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            ),
            Answer::Json => ok.content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                    .build(),
            ),
        };
        op = op.response(e.status.to_string(), ok.build()).response(
            "default",
            ResponseBuilder::new()
                .description("The failure, with a stable code (docs/api.md lists them).")
                .content("application/json", json_of("ErrorBody"))
                .build(),
        );
        if e.token {
            op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        doc.paths
            .add_path_operation(e.path.as_ref(), vec![method(e.method)], op.build());
    }
    doc
}
