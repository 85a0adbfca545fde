//! `tapir`: the command-line tool for `tapird`.
//!
//! Every command runs in one log-on that lasts across invocations: the first command logs on and keeps
//! the token in a session file, later ones reuse it (logging on again if the service forgot it, e.g.
//! after a restart), `tapir logoff` ends it. Output is a table for people, or JSON with `--json`
//! (`--output json`). Exit codes: see `failure.rs`.

mod cli;
mod commands;
mod failure;
mod find;
mod logon;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::{calls, conference, lines, service};
use crate::failure::{Exit, Outcome};

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

/// Runs the command in the shared log-on.
async fn run(cli: Cli) -> Outcome {
    let g = &cli.global;
    let c = logon::client(g).await?;
    match cli.command {
        Command::Status => service::status(g, &c).await,
        Command::Lines => lines::lines(g, &c).await,
        Command::Open { line, monitor } => lines::open(g, &c, line, monitor).await,
        Command::Close { line } => lines::close(g, &c, line).await,
        Command::Call {
            number,
            line,
            translate,
        } => calls::call(g, &c, number, line, translate).await,
        Command::Calls => calls::calls(g, &c).await,
        Command::Answer { call } => calls::answer(g, &c, call).await,
        Command::Hold { call } => calls::hold(g, &c, call).await,
        Command::Unhold { call } => calls::unhold(g, &c, call).await,
        Command::Drop { call, keep } => calls::drop(g, &c, call, keep).await,
        Command::Transfer { call, destination } => calls::transfer(g, &c, call, destination).await,
        Command::Park { call, orbit } => calls::park(g, &c, call, orbit).await,
        Command::Unpark { orbit, line } => calls::unpark(g, &c, orbit, line).await,
        Command::Pickup {
            station,
            group,
            line,
        } => calls::pickup(g, &c, station, group, line).await,
        Command::Accept { call } => calls::accept(g, &c, call).await,
        Command::Reject { call } => calls::reject(g, &c, call).await,
        Command::Redirect { call, destination } => calls::redirect(g, &c, call, destination).await,
        Command::Dial { call, digits } => calls::dial(g, &c, call, digits).await,
        Command::Digits {
            call,
            digits,
            pulse,
        } => calls::digits(g, &c, call, digits, pulse).await,
        Command::Swap { active, held } => calls::swap(g, &c, active, held).await,
        Command::Consult { number, call, line } => {
            conference::consult(g, &c, number, call, line).await
        }
        Command::Complete {
            held,
            consultation,
            conference,
        } => conference::complete(g, &c, held, consultation, conference).await,
        Command::Conference { number, call, line } => {
            conference::conference(g, &c, number, call, line).await
        }
        Command::Prepare {
            number,
            conference,
            line,
        } => conference::prepare(g, &c, number, conference, line).await,
        Command::Join {
            conference,
            consultation,
            line,
        } => conference::join(g, &c, conference, consultation, line).await,
        Command::Parties { call, line } => conference::parties(g, &c, call, line).await,
        Command::Remove { call } => conference::remove(g, &c, call).await,
        Command::Forward {
            line,
            to,
            when,
            rings,
            dnd,
            cancel: _,
        } => lines::forward(g, &c, line, to, when, rings, dnd).await,
        Command::Line { line } => lines::line(g, &c, line).await,
        Command::TakeUp { line } => lines::take_up(g, &c, line).await,
        Command::Privilege { call, privilege } => calls::privilege(g, &c, call, privilege).await,
        Command::Handoff { call, application } => calls::handoff(g, &c, call, application).await,
        Command::Secure { call } => calls::secure(g, &c, call).await,
        Command::Callback { call, mode } => calls::callback(g, &c, call, mode).await,
        Command::CancelCallback { line, completion } => {
            calls::cancel_callback(g, &c, line, completion).await
        }
        Command::Cdrs(args) => service::cdrs(g, &c, args).await,
        Command::Routes { change } => service::routes(g, &c, change).await,
        Command::Translate {
            address,
            cancel_call_waiting,
            local,
            long_distance,
        } => service::translate(g, &c, address, cancel_call_waiting, local, long_distance).await,
        Command::Events { follow, after } => service::events(g, &c, follow, after).await,
        Command::Session => service::session(g, &c).await,
        Command::Logoff => service::logoff(g, &c).await,
    }
}
