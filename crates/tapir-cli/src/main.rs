//! `tapir`: the command-line tool for `tapird`.
//!
//! Every command runs in one log-on that lasts across invocations: the first command logs on and keeps
//! the token in a session file, later ones reuse it (logging on again if the service forgot it, e.g.
//! after a restart), `tapir logoff` ends it. Output is a table for people, or JSON with `--json`.
//! Exit codes: see [`Exit`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use tapir_api::{
    Call, CallPrivilege, CompletionMode, DigitMode, EventKind, ForwardCondition, ForwardRule,
    LineEvent, LogonRequest, MakeCallRequest, TranslateRequest,
};
use tapir_client::{Client, ClientError, Pickup, StreamItem};

/// What the exit code says.
#[derive(Clone, Copy, Debug)]
enum Exit {
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
struct Failure {
    exit: Exit,
    message: String,
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

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        exit: Exit::Usage,
        message: message.into(),
    }
}

fn not_found(message: impl Into<String>) -> Failure {
    Failure {
        exit: Exit::NotFound,
        message: message.into(),
    }
}

type Outcome = Result<(), Failure>;

/// Control calls through tapird.
#[derive(Parser, Debug)]
#[command(name = "tapir", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// The service.
    #[arg(
        long,
        global = true,
        env = "TAPIR_URL",
        default_value = "http://127.0.0.1:7878"
    )]
    url: String,
    /// The application to log on as.
    #[arg(long, global = true, env = "TAPIR_APP", default_value = "cli")]
    app: String,
    /// Its secret.
    #[arg(long, global = true, env = "TAPIR_SECRET", default_value = "tapir-dev")]
    secret: String,
    /// The profile to log on with (the application's default when absent).
    #[arg(long, global = true, env = "TAPIR_PROFILE")]
    profile: Option<String>,
    /// Where the log-on's token is kept between commands.
    #[arg(long, global = true, env = "TAPIR_SESSION_FILE")]
    session_file: Option<PathBuf>,
    /// JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The status table: the engine and each provider.
    Status,
    /// The lines this log-on may use, and which are open.
    Lines,
    /// Opens a line (by ID, name or address number) to place and receive calls.
    Open {
        /// The line.
        line: String,
        /// Only watch its calls (monitor privilege).
        #[arg(long)]
        monitor: bool,
    },
    /// Closes a line open.
    Close {
        /// The line.
        line: String,
    },
    /// Calls a number.
    Call {
        /// The destination (extension, outside number, dial string).
        number: String,
        /// The line to call from (default: the first open line, else the first line).
        #[arg(long)]
        line: Option<String>,
        /// Translate a canonical number (`+1 (425) 555-0100`) with the session's location first.
        #[arg(long)]
        translate: bool,
    },
    /// The log-on's calls.
    Calls,
    /// Answers a call (default: the one offering call).
    Answer {
        /// The call: its handle or a unique start of it.
        call: Option<String>,
    },
    /// Puts a call on hold.
    Hold {
        /// The call.
        call: String,
    },
    /// Takes a call off hold.
    Unhold {
        /// The call.
        call: String,
    },
    /// Drops a call and frees its handle.
    Drop {
        /// The call.
        call: String,
        /// Keep the handle (to read the call's final state).
        #[arg(long)]
        keep: bool,
    },
    /// Transfers a call to another number without consultation.
    Transfer {
        /// The call.
        call: String,
        /// Where to.
        destination: String,
    },
    /// Parks a call; prints the orbit.
    Park {
        /// The call.
        call: String,
        /// The orbit (default: the switch chooses).
        #[arg(long)]
        orbit: Option<String>,
    },
    /// Takes a parked call back from its orbit.
    Unpark {
        /// The orbit.
        orbit: String,
        /// The line to take it on.
        #[arg(long)]
        line: Option<String>,
    },
    /// Picks up a call ringing elsewhere.
    Pickup {
        /// The ringing station.
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        station: Option<String>,
        /// A pickup group.
        #[arg(long)]
        group: Option<String>,
        /// The line to take it on.
        #[arg(long)]
        line: Option<String>,
    },
    /// Accepts an offered call (this application will handle it; it alerts).
    Accept {
        /// The call.
        call: String,
    },
    /// Rejects an offered call.
    Reject {
        /// The call.
        call: String,
    },
    /// Sends an offered call elsewhere before answering.
    Redirect {
        /// The call.
        call: String,
        /// Where to.
        destination: String,
    },
    /// Dials (more) digits on a call in dial tone or dialing.
    Dial {
        /// The call.
        call: String,
        /// The digits.
        digits: String,
    },
    /// Sends digits in-band on a connected call.
    Digits {
        /// The call.
        call: String,
        /// The digits (`0-9 A-D * #`).
        digits: String,
        /// As pulses instead of DTMF.
        #[arg(long)]
        pulse: bool,
    },
    /// Swaps the active call with a held one.
    Swap {
        /// The active call.
        active: String,
        /// The held call.
        held: String,
    },
    /// Holds a connected call pending transfer and calls NUMBER to consult.
    Consult {
        /// Who to consult.
        number: String,
        /// The call (default: the one connected call, on --line if given).
        #[arg(long)]
        call: Option<String>,
        /// The line whose connected call it is.
        #[arg(long)]
        line: Option<String>,
    },
    /// Completes a consultation transfer: the held call and the consultation call are joined.
    Complete {
        /// The held call.
        held: String,
        /// The consultation call.
        consultation: String,
        /// Make the three a conference instead.
        #[arg(long)]
        conference: bool,
    },
    /// Makes a connected call a conference and calls NUMBER to add (then `join`).
    Conference {
        /// Who to add (absent: the consultation call waits in dial tone; `dial` it).
        number: Option<String>,
        /// The call (default: the one connected call, on --line if given).
        #[arg(long)]
        call: Option<String>,
        /// The line whose connected call it is.
        #[arg(long)]
        line: Option<String>,
    },
    /// Adds another party to a conference: holds it and calls NUMBER (then `join`).
    Prepare {
        /// Who to add.
        number: String,
        /// The conference (default: the one conference, on --line if given).
        #[arg(long)]
        conference: Option<String>,
        /// The line of the conference.
        #[arg(long)]
        line: Option<String>,
    },
    /// Joins the answered consultation call to its conference.
    Join {
        /// The conference (default: the one waiting for a party, on --line if given).
        #[arg(long)]
        conference: Option<String>,
        /// The consultation call (default: the conference line's connected call that is no party).
        #[arg(long)]
        consultation: Option<String>,
        /// The line of the conference.
        #[arg(long)]
        line: Option<String>,
    },
    /// The calls of a conference: the conference first, then its parties.
    Parties {
        /// A call of the conference (default: the one conference, on --line if given).
        call: Option<String>,
        /// The line of the conference.
        #[arg(long)]
        line: Option<String>,
    },
    /// Takes a party out of its conference.
    Remove {
        /// The party's call.
        call: String,
    },
    /// Sets or cancels a line's forwarding, or do-not-disturb.
    Forward {
        /// The line.
        line: String,
        /// Forward to this number.
        #[arg(long, conflicts_with_all = ["dnd", "cancel"], required_unless_present_any = ["dnd", "cancel"])]
        to: Option<String>,
        /// When: unconditional, busy or no_answer.
        #[arg(long, default_value = "unconditional")]
        when: String,
        /// Rings before forwarding on no answer.
        #[arg(long)]
        rings: Option<u32>,
        /// Do not disturb: refuse every call.
        #[arg(long, conflicts_with = "cancel")]
        dnd: bool,
        /// Cancel forwarding and do-not-disturb.
        #[arg(long)]
        cancel: bool,
    },
    /// A line's status: in service, its opens, each address's calls.
    Line {
        /// The line.
        line: String,
    },
    /// Takes up the calls already on an open line (a monitor handle each).
    TakeUp {
        /// The line (opened as monitor if it is not open).
        line: String,
    },
    /// Changes this log-on's privilege on a call: owner or monitor.
    Privilege {
        /// The call.
        call: String,
        /// owner or monitor.
        privilege: String,
    },
    /// Gives a call to another application that has its line open.
    Handoff {
        /// The call.
        call: String,
        /// The application.
        application: String,
    },
    /// Secures a call against interruption.
    Secure {
        /// The call.
        call: String,
    },
    /// Asks the switch to complete a call to a busy or unanswered party later; prints its ID.
    Callback {
        /// The call.
        call: String,
        /// camp_on, callback, intrude or message.
        #[arg(long, default_value = "callback")]
        mode: String,
    },
    /// Cancels a call-completion request of a line.
    CancelCallback {
        /// The line.
        line: String,
        /// The ID `callback` printed.
        completion: u32,
    },
    /// The route table, or a change to it.
    Routes {
        #[command(subcommand)]
        change: Option<RouteChange>,
    },
    /// Translates an address with the session's location.
    Translate {
        /// The address, canonical or dialable.
        address: String,
        /// Prefix the cancel-call-waiting string.
        #[arg(long)]
        cancel_call_waiting: bool,
        /// Treat as local.
        #[arg(long)]
        local: bool,
        /// Treat as long distance.
        #[arg(long)]
        long_distance: bool,
    },
    /// The log-on's events: those so far, or (with --follow) as they happen.
    Events {
        /// Keep following new events until interrupted or the log-on ends.
        #[arg(long, short)]
        follow: bool,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Call history: detail records of ended calls, newest first.
    Cdrs {
        /// Calls that started since: a time back from now (`90s`, `15m`, `1h`, `7d`) or an RFC 3339
        /// time (`2026-11-21T09:00:00Z`).
        #[arg(long)]
        since: Option<String>,
        /// Calls that started before this (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Part of the caller's, called or connected number.
        #[arg(long)]
        number: Option<String>,
        /// A call ID (`call-7`): its records and those linked to it (transfers, conferences).
        #[arg(long)]
        call_id: Option<String>,
        /// answered, busy, no_answer, rejected, failed, picked_up_elsewhere, forwarded, redirected,
        /// transferred or parked.
        #[arg(long)]
        disposition: Option<String>,
        /// At most this many records (1–1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Every matching record (follows the pages; --limit is then the page size).
        #[arg(long)]
        all: bool,
        /// table, csv or jsonl (`--json` prints the records as one JSON array).
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// The log-on's session.
    Session,
    /// Ends the log-on (its calls no other session holds are dropped).
    Logoff,
}

#[derive(Subcommand, Debug)]
enum RouteChange {
    /// Routes calls of a class to an application.
    Set {
        /// The call class (`voice`, `voice.2004`, `data`, …).
        class: String,
        /// The application.
        application: String,
    },
    /// Clears the route of a class.
    Clear {
        /// The call class.
        class: String,
    },
    /// Sets the default route: `first-owner`, `reject` or `app:NAME`.
    Default {
        /// The default.
        default: String,
    },
}

/// What the session file keeps.
#[derive(Serialize, Deserialize)]
struct Saved {
    url: String,
    application: String,
    token: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { Exit::Usage as u8 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tapir: cannot start: {e}");
            return ExitCode::from(Exit::ServiceFailed as u8);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tapir: {}", f.message);
            ExitCode::from(f.exit as u8)
        }
    }
}

fn session_file(g: &Global) -> PathBuf {
    if let Some(p) = &g.session_file {
        return p.clone();
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("tapir").join("session.json")
}

/// The log-on: the saved one if the service still knows it, else a new one (saved).
async fn client(g: &Global) -> Result<Client, Failure> {
    let path = session_file(g);
    let saved = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Saved>(&b).ok());
    if let Some(s) = saved
        && s.url == g.url
        && s.application == g.app
    {
        let c = Client::with_token(&g.url, &s.token)?;
        match c.session().await {
            Ok(_) => return Ok(c),
            Err(ClientError::Api { status: 401, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let c = Client::logon(
        &g.url,
        &LogonRequest {
            application: g.app.clone(),
            secret: g.secret.clone(),
            profile: g.profile.clone(),
            shared: false,
        },
    )
    .await?;
    let saved = Saved {
        url: g.url.clone(),
        application: g.app.clone(),
        token: c.token().to_owned(),
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = serde_json::to_vec(&saved)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&path, b))
    {
        eprintln!(
            "tapir: warning: cannot keep the log-on in {}: {e}; the next command logs on again",
            path.display()
        );
    }
    Ok(c)
}

async fn run(cli: Cli) -> Outcome {
    let g = &cli.global;
    let c = client(g).await?;
    match cli.command {
        Command::Status => {
            let rows = c.status().await?;
            print(g, &rows, || {
                table(
                    &[
                        "ID",
                        "SERVICE",
                        "STATE",
                        "LINES",
                        "OUT OF SERVICE",
                        "SESSIONS",
                        "REASON",
                    ],
                    rows.iter().map(|r| {
                        vec![
                            r.id.clone(),
                            r.service.clone(),
                            r.state.clone(),
                            r.lines.to_string(),
                            r.lines_out_of_service.to_string(),
                            r.sessions.to_string(),
                            r.reason.clone().unwrap_or_default(),
                        ]
                    }),
                )
            })
        }
        Command::Lines => {
            let lines = c.lines().await?;
            let opens = c.snapshot().await?.lines;
            print(g, &lines, || {
                table(
                    &["ID", "NAME", "PROVIDER", "ADDRESSES", "OPEN"],
                    lines.iter().map(|l| {
                        let open: Vec<&str> = opens
                            .iter()
                            .filter(|o| o.line == l.id)
                            .map(|o| o.line_handle.as_str())
                            .collect();
                        vec![
                            l.id.to_string(),
                            l.name.clone(),
                            l.provider.clone(),
                            l.addresses.join(" "),
                            open.join(" "),
                        ]
                    }),
                )
            })
        }
        Command::Open { line, monitor } => {
            let id = line_id(&c, &line).await?;
            let open = c
                .open_line(id, if monitor { "monitor" } else { "owner" })
                .await?;
            print(g, &open, || format!("{}\n", open.line_handle))
        }
        Command::Close { line } => {
            let id = line_id(&c, &line).await?;
            let opens = c.snapshot().await?.lines;
            let open = opens
                .iter()
                .find(|o| o.line == id)
                .ok_or_else(|| not_found(format!("line {line} is not open")))?;
            c.close_line(&open.line_handle).await?;
            print(g, open, || format!("closed {}\n", open.line_handle))
        }
        Command::Call {
            number,
            line,
            translate,
        } => {
            let line_handle = line_open(&c, line.as_deref()).await?;
            let call = c
                .make_call_with(&MakeCallRequest {
                    line_handle,
                    destination: Some(number),
                    translate,
                })
                .await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Calls => {
            let calls = c.calls().await?;
            print(g, &calls, || calls_table(&calls))
        }
        Command::Answer { call } => {
            let handle = match call {
                Some(h) => find_call(&c, &h).await?,
                None => {
                    let offering: Vec<Call> = c
                        .calls()
                        .await?
                        .into_iter()
                        .filter(|c| c.state == "offering" || c.state == "accepted")
                        .collect();
                    match offering.as_slice() {
                        [one] => one.call.clone(),
                        [] => return Err(not_found("no call is offering")),
                        _ => {
                            return Err(usage(format!(
                                "{} calls are offering; name one: {}",
                                offering.len(),
                                offering
                                    .iter()
                                    .map(|c| short(&c.call))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )));
                        }
                    }
                }
            };
            let call = c.answer(&handle).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Hold { call } => {
            let call = c.hold(&find_call(&c, &call).await?).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Unhold { call } => {
            let call = c.unhold(&find_call(&c, &call).await?).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Drop { call, keep } => {
            let handle = find_call(&c, &call).await?;
            let call = c.drop_call(&handle).await?;
            if !keep {
                c.deallocate(&handle).await?;
            }
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Transfer { call, destination } => {
            let call = c
                .blind_transfer(&find_call(&c, &call).await?, &destination)
                .await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Park { call, orbit } => {
            let parked = c
                .park(&find_call(&c, &call).await?, orbit.as_deref())
                .await?;
            print(g, &parked, || format!("parked in orbit {}\n", parked.orbit))
        }
        Command::Unpark { orbit, line } => {
            let line_handle = line_open(&c, line.as_deref()).await?;
            let call = c.unpark(&line_handle, &orbit).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Pickup {
            station,
            group,
            line,
        } => {
            let line_handle = line_open(&c, line.as_deref()).await?;
            let target = match (&station, &group) {
                (Some(s), _) => Pickup::Station(s),
                (None, Some(gr)) => Pickup::Group(gr),
                (None, None) => return Err(usage("pickup needs --station or --group")),
            };
            let call = c.pickup(&line_handle, target).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Accept { call } => {
            let call = c.accept(&find_call(&c, &call).await?).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Reject { call } => {
            let call = c.reject(&find_call(&c, &call).await?).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Redirect { call, destination } => {
            let call = c
                .redirect(&find_call(&c, &call).await?, &destination)
                .await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Dial { call, digits } => {
            let call = c.dial(&find_call(&c, &call).await?, &digits).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Digits {
            call,
            digits,
            pulse,
        } => {
            let mode = if pulse {
                DigitMode::Pulse
            } else {
                DigitMode::Dtmf
            };
            let call = c
                .generate_digits_as(&find_call(&c, &call).await?, &digits, mode)
                .await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Swap { active, held } => {
            let active = find_call(&c, &active).await?;
            let call = c.swap_hold(&active, &find_call(&c, &held).await?).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Consult { number, call, line } => {
            let held = pick_call(&c, call, line, &["connected"], "connected call").await?;
            let consultation = c.setup_transfer(&held).await?;
            let consultation = c.dial(&consultation.call, &number).await?;
            print(g, &consultation, || {
                calls_table(std::slice::from_ref(&consultation))
            })
        }
        Command::Complete {
            held,
            consultation,
            conference,
        } => {
            let held = find_call(&c, &held).await?;
            let consultation = find_call(&c, &consultation).await?;
            let call = if conference {
                c.complete_conference(&held, &consultation).await?
            } else {
                c.complete_transfer(&held, &consultation).await?
            };
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Conference { number, call, line } => {
            let call = pick_call(&c, call, line, &["connected"], "connected call").await?;
            let mut setup = c.setup_conference(&call).await?;
            if let Some(n) = number {
                setup.consultation = c.dial(&setup.consultation.call, &n).await?;
            }
            print(g, &setup, || {
                calls_table(&[setup.conference.clone(), setup.consultation.clone()])
            })
        }
        Command::Prepare {
            number,
            conference,
            line,
        } => {
            let conference = pick_conference(&c, conference, line, &["connected"]).await?;
            let consultation = c.prepare_add_to_conference(&conference).await?;
            let consultation = c.dial(&consultation.call, &number).await?;
            print(g, &consultation, || {
                calls_table(std::slice::from_ref(&consultation))
            })
        }
        Command::Join {
            conference,
            consultation,
            line,
        } => {
            let conference =
                pick_conference(&c, conference, line, &["on_hold_pending_conference"]).await?;
            let consultation = match consultation {
                Some(k) => find_call(&c, &k).await?,
                None => {
                    // The conference line's connected call that is not yet one of its calls.
                    let of = c.call(&conference).await?;
                    let members = c.conference_calls(&conference).await?;
                    let candidates: Vec<Call> = c
                        .calls()
                        .await?
                        .into_iter()
                        .filter(|k| {
                            k.line == of.line
                                && k.state == "connected"
                                && members.iter().all(|m| m.call != k.call)
                        })
                        .collect();
                    one_of(candidates, "answered consultation call")?
                }
            };
            c.add_to_conference(&conference, &consultation).await?;
            let calls = c.conference_calls(&conference).await?;
            print(g, &calls, || calls_table(&calls))
        }
        Command::Parties { call, line } => {
            let call = match call {
                Some(h) => find_call(&c, &h).await?,
                None => {
                    pick_conference(
                        &c,
                        None,
                        line,
                        &["connected", "on_hold", "on_hold_pending_conference"],
                    )
                    .await?
                }
            };
            let calls = c.conference_calls(&call).await?;
            print(g, &calls, || calls_table(&calls))
        }
        Command::Remove { call } => {
            let call = c
                .remove_from_conference(&find_call(&c, &call).await?)
                .await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Forward {
            line,
            to,
            when,
            rings,
            dnd,
            cancel: _,
        } => {
            let line_handle = line_open(&c, Some(&line)).await?;
            let rules = match to {
                Some(destination) => {
                    let condition = when
                        .parse::<ForwardCondition>()
                        .map_err(|e| usage(e.to_string()))?;
                    vec![ForwardRule {
                        condition,
                        destination,
                        rings,
                    }]
                }
                None => Vec::new(),
            };
            let st = c.forward(&line_handle, dnd, rules).await?;
            print(g, &st, || line_status_text(&st))
        }
        Command::Line { line } => {
            let line_handle = line_open(&c, Some(&line)).await?;
            let st = c.line_status(&line_handle).await?;
            print(g, &st, || line_status_text(&st))
        }
        Command::TakeUp { line } => {
            let id = line_id(&c, &line).await?;
            let opens = c.snapshot().await?.lines;
            let line_handle = match opens.iter().find(|o| o.line == id) {
                Some(o) => o.line_handle.clone(),
                None => c.open_line(id, "monitor").await?.line_handle,
            };
            let calls = c.new_calls(&line_handle).await?;
            print(g, &calls, || calls_table(&calls))
        }
        Command::Privilege { call, privilege } => {
            let privilege = privilege
                .parse::<CallPrivilege>()
                .map_err(|e| usage(e.to_string()))?;
            let call = c
                .set_call_privilege(&find_call(&c, &call).await?, privilege)
                .await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Handoff { call, application } => {
            let call = c
                .handoff(&find_call(&c, &call).await?, &application)
                .await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Secure { call } => {
            let call = c.secure_call(&find_call(&c, &call).await?).await?;
            print(g, &call, || calls_table(std::slice::from_ref(&call)))
        }
        Command::Callback { call, mode } => {
            let mode = mode
                .parse::<CompletionMode>()
                .map_err(|e| usage(e.to_string()))?;
            let done = c.complete_call(&find_call(&c, &call).await?, mode).await?;
            print(g, &done, || format!("completion {}\n", done.completion))
        }
        Command::CancelCallback { line, completion } => {
            let line_handle = line_open(&c, Some(&line)).await?;
            c.cancel_call_completion(&line_handle, completion).await?;
            if !g.json {
                println!("cancelled completion {completion}");
            }
            Ok(())
        }
        Command::Cdrs {
            since,
            until,
            number,
            call_id,
            disposition,
            limit,
            all,
            format,
        } => {
            if !["table", "csv", "jsonl"].contains(&format.as_str()) {
                return Err(usage(format!(
                    "--format must be table, csv or jsonl, not {format:?}"
                )));
            }
            let now = std::time::SystemTime::now();
            let mut params = tapir_api::cdr::CdrQueryParams {
                since: since.map(|s| when(&s, now)).transpose()?,
                until: until.map(|s| when(&s, now)).transpose()?,
                number,
                call_id,
                disposition,
                limit: Some(limit),
                ..Default::default()
            };
            let mut records = Vec::new();
            loop {
                let page = c.cdrs(&params).await?;
                records.extend(page.records);
                match page.next {
                    Some(before) if all => params.before = Some(before),
                    _ => break,
                }
            }
            if format == "csv" && !g.json {
                print!("{}", tapir_api::cdr::csv_header());
                records
                    .iter()
                    .for_each(|r| print!("{}", tapir_api::cdr::csv_row(r)));
                return Ok(());
            }
            if format == "jsonl" && !g.json {
                records
                    .iter()
                    .for_each(|r| print!("{}", tapir_api::cdr::jsonl_line(r)));
                return Ok(());
            }
            print(g, &records, || cdrs_table(&records))
        }
        Command::Routes { change } => {
            let routes = match change {
                None => c.routes().await?,
                Some(RouteChange::Set { class, application }) => {
                    c.set_route(&class, &application).await?
                }
                Some(RouteChange::Clear { class }) => c.clear_route(&class).await?,
                Some(RouteChange::Default { default }) => c.set_default_route(&default).await?,
            };
            print(g, &routes, || {
                let mut out = table(
                    &["CLASS", "APPLICATION"],
                    routes
                        .routes
                        .iter()
                        .map(|r| vec![r.class.clone(), r.application.clone()]),
                );
                out.push_str(&format!("default: {}\n", routes.default));
                out
            })
        }
        Command::Translate {
            address,
            cancel_call_waiting,
            local,
            long_distance,
        } => {
            let t = c
                .translate(&TranslateRequest {
                    address,
                    cancel_call_waiting,
                    force_local: local,
                    force_long_distance: long_distance,
                })
                .await?;
            print(g, &t, || {
                format!(
                    "dialable:    {}\ndisplayable: {}\nflags:       {}\n",
                    t.dialable,
                    t.displayable,
                    t.flags.join(" ")
                )
            })
        }
        Command::Events { follow, after } => events(g, &c, follow, after).await,
        Command::Session => {
            let s = c.session().await?;
            print(g, &s, || {
                format!(
                    "session:      {}\napplication:  {}\nprofile:      {}\nshared:       {}\napplications: {}\n{}",
                    s.session_id,
                    s.application,
                    s.profile,
                    s.shared,
                    s.applications.join(" "),
                    s.disabled_services
                        .iter()
                        .map(|d| format!("disabled:     {} ({})\n", d.service, d.reason))
                        .collect::<String>()
                )
            })
        }
        Command::Logoff => {
            c.logoff().await?;
            let _ = std::fs::remove_file(session_file(g));
            if !g.json {
                println!("logged off");
            }
            Ok(())
        }
    }
}

async fn events(g: &Global, c: &Client, follow: bool, after: u64) -> Outcome {
    // Without --follow: the events up to now (the snapshot's position), then stop.
    let until = if follow {
        None
    } else {
        Some(c.snapshot().await?.seq)
    };
    if until.is_some_and(|u| u <= after) {
        return Ok(());
    }
    let mut stream = c.events(after);
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(item) = item else { return Ok(()) };
        match item? {
            StreamItem::Event(e) => {
                if g.json {
                    println!("{}", serde_json::to_string(&e).unwrap_or_default());
                } else {
                    println!("{:>6}  {}", e.seq, describe(&e.kind));
                }
                if until.is_some_and(|u| e.seq >= u) {
                    return Ok(());
                }
            }
            StreamItem::Resync(s) => {
                if g.json {
                    println!("{}", serde_json::json!({ "type": "resync", "snapshot": s }));
                } else {
                    println!(
                        "        (events before {} were trimmed; now {} line opens, {} calls)",
                        s.seq + 1,
                        s.lines.len(),
                        s.calls.len()
                    );
                }
                if until.is_some_and(|u| s.seq >= u) {
                    return Ok(());
                }
            }
        }
    }
}

fn describe(k: &EventKind) -> String {
    match k {
        EventKind::NewCall {
            call,
            line_handle,
            call_id,
            privilege,
            ..
        } => format!(
            "new call {} on {} (call ID {call_id}, {privilege})",
            short(call),
            line_handle
        ),
        EventKind::CallState { call, state, .. } => format!("call {} {state}", short(call)),
        EventKind::CallInfo { call, changed } => format!("call {} info {changed}", short(call)),
        EventKind::Digit { call, digit, mode } => {
            format!("call {} digit {digit} ({mode})", short(call))
        }
        EventKind::Line { line_handle, event } => match event {
            LineEvent::Ringing { count, .. } => format!("line {line_handle} ringing ({count})"),
            LineEvent::InService => format!("line {line_handle} in service"),
            LineEvent::OutOfService { reason } => {
                format!("line {line_handle} out of service: {reason}")
            }
            LineEvent::ForwardingChanged { address } => {
                format!("line {line_handle} forwarding changed (address {address})")
            }
            LineEvent::Parked { orbit, call_id } => {
                format!("line {line_handle} parked {call_id} in orbit {orbit}")
            }
            LineEvent::Unparked { orbit, call_id } => {
                format!("line {line_handle} {call_id} left orbit {orbit}")
            }
            LineEvent::CapsChanged => format!("line {line_handle} capabilities changed"),
            LineEvent::DevicesChanged => format!("line {line_handle} devices changed"),
            LineEvent::Other => format!("line {line_handle}: an event this tool does not know"),
        },
        EventKind::LineClosed { line_handle } => format!("line {line_handle} closed"),
        EventKind::Status { row } => format!("status {} {}", row.id, row.state),
        EventKind::EventsLost { first, last } => format!("events {first}..={last} lost"),
        EventKind::Unknown => "an event of a kind this tool does not know".to_owned(),
    }
}

/// Prints JSON or the human form.
fn print<T: Serialize>(g: &Global, value: &T, human: impl FnOnce() -> String) -> Outcome {
    if g.json {
        let text = serde_json::to_string_pretty(value).map_err(|e| Failure {
            exit: Exit::Unreachable,
            message: e.to_string(),
        })?;
        println!("{text}");
    } else {
        print!("{}", human());
    }
    Ok(())
}

/// A `--since`/`--until` value: `90s`, `15m`, `1h`, `7d` back from `now`, or an RFC 3339 time.
fn when(text: &str, now: std::time::SystemTime) -> Result<String, Failure> {
    if tapir_api::cdr::parse_time(text).is_some() {
        return Ok(text.to_owned());
    }
    let bad = || {
        usage(format!(
            "{text:?} is neither a time back from now (90s, 15m, 1h, 7d) nor an RFC 3339 time"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let back = std::time::Duration::from_secs(n.checked_mul(secs).ok_or_else(bad)?);
    let then = now.checked_sub(back).ok_or_else(bad)?;
    Ok(tapir_api::cdr::format_time(then))
}

/// A party as people read it: `2002 (Bob)`, or what is known of it.
fn party(p: &tapir_api::Party) -> String {
    match (&p.number, &p.name) {
        (Some(n), Some(name)) => format!("{n} ({name})"),
        (Some(n), None) => n.clone(),
        (None, Some(name)) => name.clone(),
        (None, None) => "-".into(),
    }
}

/// Call detail records as a table. TO is the called party; when the call was answered by someone
/// else (forwarded, transferred, picked up), `→` and who.
fn cdrs_table(records: &[tapir_api::cdr::Cdr]) -> String {
    let secs = |ms: u64| format!("{}s", (ms + 500) / 1000);
    table(
        &[
            "STARTED (UTC)",
            "LINE",
            "FROM",
            "TO",
            "DISPOSITION",
            "RING",
            "TALK",
            "HOLD",
            "REASON",
            "CALL ID",
        ],
        records.iter().map(|r| {
            let known = |p: &tapir_api::Party| p.number.is_some() || p.name.is_some();
            let same = |a: &tapir_api::Party, b: &tapir_api::Party| {
                a.number.is_some() && a.number == b.number
            };
            let to = if known(&r.connected)
                && !same(&r.connected, &r.called)
                && !same(&r.connected, &r.caller)
            {
                format!("{} → {}", party(&r.called), party(&r.connected))
            } else {
                party(&r.called)
            };
            vec![
                r.started.get(..19).unwrap_or(&r.started).replace('T', " "),
                r.line_name.clone(),
                party(&r.caller),
                to,
                r.disposition.clone(),
                secs(r.ringing_ms),
                secs(r.talking_ms),
                secs(r.on_hold_ms),
                r.reason.clone(),
                r.call_id.clone(),
            ]
        }),
    )
}

/// A call handle as people read it: the first 8 hex digits (any unique start is accepted back).
fn short(handle: &str) -> String {
    let hex = handle.strip_prefix("call:").unwrap_or(handle);
    hex.chars().take(8).collect()
}

fn calls_table(calls: &[Call]) -> String {
    table(
        &[
            "CALL",
            "CALL ID",
            "LINE",
            "STATE",
            "PRIVILEGE",
            "FROM",
            "TO",
            "CAN",
        ],
        calls.iter().map(|c| {
            vec![
                short(&c.call),
                c.call_id.clone(),
                c.line.to_string(),
                c.state.clone(),
                c.privilege.clone(),
                party(&c.caller),
                party(&c.called),
                c.features.join(","),
            ]
        }),
    )
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// The handle of a call of this log-on: the full handle, or a unique start of its hex digits.
async fn find_call(c: &Client, given: &str) -> Result<String, Failure> {
    let want = given
        .strip_prefix("call:")
        .unwrap_or(given)
        .to_ascii_lowercase();
    if want.is_empty() || !want.chars().all(|ch| ch.is_ascii_hexdigit()) {
        return Err(usage(format!(
            "{given:?} is not a call handle (call:HEX, or the start of the HEX)"
        )));
    }
    if want.len() == 16 {
        return Ok(format!("call:{want}"));
    }
    let calls = c.calls().await?;
    let matching: Vec<&Call> = calls
        .iter()
        .filter(|c| c.call.trim_start_matches("call:").starts_with(&want))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.call.clone()),
        [] => Err(not_found(format!("no call {given} in this log-on"))),
        _ => Err(usage(format!(
            "{given} matches {} calls; give more digits",
            matching.len()
        ))),
    }
}

/// The line ID for an ID, a name or an address number.
async fn line_id(c: &Client, given: &str) -> Result<u32, Failure> {
    let lines = c.lines().await?;
    lines
        .iter()
        .find(|l| l.name == given || l.addresses.iter().any(|a| a == given))
        .or_else(|| {
            given
                .parse::<u32>()
                .ok()
                .and_then(|id| lines.iter().find(|l| l.id == id))
        })
        .map(|l| l.id)
        .ok_or_else(|| not_found(format!("no line {given:?} in this log-on's profile")))
}

/// The call given, or else the one call in one of `states` (on `line`, if given).
async fn pick_call(
    c: &Client,
    given: Option<String>,
    line: Option<String>,
    states: &[&str],
    what: &str,
) -> Result<String, Failure> {
    if let Some(h) = given {
        return find_call(c, &h).await;
    }
    let line = line_filter(c, line).await?;
    let candidates: Vec<Call> = c
        .calls()
        .await?
        .into_iter()
        .filter(|k| states.contains(&k.state.as_str()) && line.is_none_or(|l| k.line == l))
        .collect();
    one_of(candidates, what)
}

/// The conference given, or the one conference (a call whose conference it heads) in one of
/// `states`, on `line` if given.
async fn pick_conference(
    c: &Client,
    given: Option<String>,
    line: Option<String>,
    states: &[&str],
) -> Result<String, Failure> {
    if let Some(h) = given {
        return find_call(c, &h).await;
    }
    let line = line_filter(c, line).await?;
    let mut conferences = Vec::new();
    for k in c.calls().await? {
        if !states.contains(&k.state.as_str()) || line.is_some_and(|l| k.line != l) {
            continue;
        }
        // A conference's parent is the first of its conference's calls.
        let heads = c
            .conference_calls(&k.call)
            .await
            .ok()
            .and_then(|calls| calls.first().map(|f| f.call == k.call))
            .unwrap_or(false);
        if heads {
            conferences.push(k);
        }
    }
    one_of(conferences, "conference")
}

/// The line ID a `--line` names, if one was given.
async fn line_filter(c: &Client, line: Option<String>) -> Result<Option<u32>, Failure> {
    match line {
        Some(l) => Ok(Some(line_id(c, &l).await?)),
        None => Ok(None),
    }
}

/// The one call of `calls`, or a usage error naming them.
fn one_of(calls: Vec<Call>, what: &str) -> Result<String, Failure> {
    match calls.as_slice() {
        [one] => Ok(one.call.clone()),
        [] => Err(not_found(format!("no {what} in this log-on"))),
        _ => Err(usage(format!(
            "{} calls could be the {what}; name one: {}",
            calls.len(),
            calls
                .iter()
                .map(|k| short(&k.call))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn line_status_text(st: &tapir_api::LineStatus) -> String {
    let mut out = format!(
        "line {} ({}): {}, {} open{}\n",
        st.line,
        st.line_handle,
        if st.in_service {
            "in service".to_owned()
        } else {
            format!(
                "out of service ({})",
                st.reason.as_deref().unwrap_or("no reason given")
            )
        },
        st.opens,
        if st.opens == 1 { "" } else { "s" }
    );
    out.push_str(&table(
        &[
            "ADDRESS",
            "NUMBER",
            "ACTIVE",
            "ON HOLD",
            "PENDING TRANSFER",
            "PENDING CONFERENCE",
        ],
        st.addresses.iter().map(|a| {
            vec![
                a.address.to_string(),
                a.number.clone(),
                a.active.to_string(),
                a.on_hold.to_string(),
                a.pending_transfer.to_string(),
                a.pending_conference.to_string(),
            ]
        }),
    ));
    for d in &st.devices {
        out.push_str(&format!(
            "device {}{}{}\n",
            d.contact,
            d.source
                .as_deref()
                .map(|s| format!(" from {s}"))
                .unwrap_or_default(),
            d.expires_in
                .map(|e| format!(", registered for {e} s more"))
                .unwrap_or_else(|| ", fixed".to_owned()),
        ));
    }
    out
}

/// A line open to place or take a call on: the given line's (opened as owner if it is not open yet), or
/// the first open one, or the first line opened as owner.
async fn line_open(c: &Client, given: Option<&str>) -> Result<String, Failure> {
    let opens = c.snapshot().await?.lines;
    let id = match given {
        Some(l) => line_id(c, l).await?,
        None => match opens.first() {
            Some(o) => return Ok(o.line_handle.clone()),
            None => c
                .lines()
                .await?
                .first()
                .map(|l| l.id)
                .ok_or_else(|| not_found("this log-on's profile has no lines"))?,
        },
    };
    if let Some(o) = opens.iter().find(|o| o.line == id) {
        return Ok(o.line_handle.clone());
    }
    Ok(c.open_line(id, "owner").await?.line_handle)
}
