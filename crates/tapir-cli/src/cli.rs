//! The command line: global options, and every command with its arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Control calls through tapird.
#[derive(Parser, Debug)]
#[command(name = "tapir", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Debug)]
pub(crate) struct Global {
    /// The service.
    #[arg(
        long,
        global = true,
        env = "TAPIR_URL",
        default_value = "http://127.0.0.1:7878"
    )]
    pub(crate) url: String,
    /// The application to log on as.
    #[arg(long, global = true, env = "TAPIR_APP", default_value = "cli")]
    pub(crate) app: String,
    /// Its secret.
    #[arg(long, global = true, env = "TAPIR_SECRET", default_value = "tapir-dev")]
    pub(crate) secret: String,
    /// The profile to log on with (the application's default when absent).
    #[arg(long, global = true, env = "TAPIR_PROFILE")]
    pub(crate) profile: Option<String>,
    /// Where the log-on's token is kept between commands.
    #[arg(long, global = true, env = "TAPIR_SESSION_FILE")]
    pub(crate) session_file: Option<PathBuf>,
    /// How to print what a command returns.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
    /// JSON instead of tables: `--output json`.
    #[arg(long, global = true)]
    json: bool,
}

impl Global {
    /// Whether to print JSON.
    pub(crate) fn json(&self) -> bool {
        self.json || self.output == Output::Json
    }
}

/// How a command's result is printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// Tables and lines for people.
    Table,
    /// JSON, as the service answers it, for scripts.
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
    Cdrs(CdrsArgs),
    /// The log-on's session.
    Session,
    /// Ends the log-on (its calls no other session holds are dropped).
    Logoff,
}

#[derive(Subcommand, Debug)]
pub(crate) enum RouteChange {
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

/// What `tapir cdrs` asks for.
#[derive(Args, Debug)]
pub(crate) struct CdrsArgs {
    /// Calls that started since: a time back from now (`90s`, `15m`, `1h`, `7d`) or an RFC 3339
    /// time (`2026-11-21T09:00:00Z`).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Calls that started before this (same forms as --since).
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Part of the caller's, called or connected number.
    #[arg(long)]
    pub(crate) number: Option<String>,
    /// A call ID (`call-7`): its records and those linked to it (transfers, conferences).
    #[arg(long)]
    pub(crate) call_id: Option<String>,
    /// answered, busy, no_answer, rejected, failed, picked_up_elsewhere, forwarded, redirected,
    /// transferred or parked.
    #[arg(long)]
    pub(crate) disposition: Option<String>,
    /// At most this many records (1–1000).
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: u32,
    /// Every matching record (follows the pages; --limit is then the page size).
    #[arg(long)]
    pub(crate) all: bool,
    /// table, csv or jsonl (`--json` prints the records as one JSON array).
    #[arg(long, default_value = "table")]
    pub(crate) format: String,
}
