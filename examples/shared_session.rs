//! A shared session and the route table, on the embedded default configuration.
//!
//! The reception console and a wallboard log on to the engine's shared session: one session, one set of
//! handles, and each application reads the whole event stream. A front-desk application logs on to a
//! session of its own and opens the reception extension (2004) first. The configuration routes voice
//! calls to 2004 to the application "reception", so an outside call goes to the shared session, which
//! answers it while the wallboard watches. Then the route is cleared and the next call falls back to the
//! default route, the first owner: the front desk.
//!
//! Run it with `cargo run --example shared_session`.

use std::time::Duration;

use tapir::core::state::CallStateKind;
use tapir::profile::LogonOptions;
use tapir::{CallHandle, Event, OpenOptions, Session};
use tapir_config::Config;
use tapir_simswitch::{CallerId, RingIn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let running = Config::embedded().start().await?;
    let engine = &running.engine;
    let switch = &running.switches["pbx"];

    let (routes, default) = engine.routes();
    for r in &routes {
        println!("route: {} -> {}", r.class, r.application);
    }
    println!("default route: {default:?}");

    let reception = engine
        .logon_with(LogonOptions::new("reception").shared())
        .await?;
    let wallboard = engine
        .logon_with(LogonOptions::new("wallboard").shared())
        .await?;
    println!(
        "shared session {} used by {:?}",
        reception.id(),
        wallboard.applications()
    );
    let desk = engine
        .logon_with(LogonOptions::new("front-desk").profile("front-desk"))
        .await?;
    println!("front desk: individual session {}", desk.id());

    let line_2004 = desk
        .lines()
        .into_iter()
        .find(|l| l.caps.addresses[0].address == "2004")
        .ok_or("the front-desk profile has no line 2004")?
        .id;
    // The front desk opens the line first: without a route it would own new calls.
    desk.open_line(line_2004, OpenOptions::owner()).await?;
    reception.open_line(line_2004, OpenOptions::owner()).await?;

    let board = tokio::spawn(print_events(wallboard.clone()));

    // Call 1: routed to "reception", in the shared session.
    let caller = switch.ring_in(RingIn::new("2004", CallerId::named("5550123", "Pat")))?;
    let call = offered(&reception).await?;
    reception.answer(call).await?;
    println!(
        "[reception] answered call {}",
        reception.call_info(call)?.call_id()
    );
    wait_for(&reception, call, CallStateKind::Connected).await?;
    println!(
        "[front-desk] holds {} calls (the route passed it over)",
        desk.calls().len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    caller.hang_up();
    wait_for(&reception, call, CallStateKind::Disconnected).await?;
    reception.drop_call(call).await?;
    // The wallboard deallocates: the handle is the session's, whichever application uses it.
    wallboard.deallocate(call)?;

    // Call 2: with the route cleared, the default route gives it to the first owner.
    engine.clear_route("voice.2004");
    println!("route voice.2004 cleared");
    let _caller = switch.ring_in(RingIn::new("2004", CallerId::number("5550124")))?;
    let call = offered(&desk).await?;
    println!(
        "[front-desk] offered call {} from {}",
        desk.call_info(call)?.call_id(),
        desk.call_info(call)?
            .info
            .caller
            .number
            .as_deref()
            .unwrap_or("?")
    );
    desk.reject(call).await?;
    desk.deallocate(call)?;

    reception.logoff().await;
    println!(
        "reception logged off; the shared session goes on for {:?}",
        wallboard.applications()
    );
    wallboard.logoff().await;
    board.await?;
    desk.logoff().await;
    let stats = engine.stats();
    println!("left behind: {stats:?}");
    engine.shutdown().await;
    Ok(())
}

/// Waits for the session's next offered call.
async fn offered(s: &Session) -> Result<CallHandle, Box<dyn std::error::Error>> {
    for _ in 0..200 {
        if let Some(&call) = s.calls().first() {
            return Ok(call);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("no call was offered".into())
}

async fn wait_for(
    s: &Session,
    call: CallHandle,
    kind: CallStateKind,
) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..500 {
        if s.call_status(call)?.state.kind() == kind {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!("the call did not become {kind:?}").into())
}

/// The wallboard prints the shared session's events until it logs off.
async fn print_events(s: Session) {
    while let Some(e) = s.next_event().await {
        match e.event {
            Event::NewCall { call, call_id, .. } => {
                println!("[wallboard] #{} new call {call} (call ID {call_id})", e.seq)
            }
            Event::CallState { call, state, .. } => {
                println!("[wallboard] #{} call {call}: {:?}", e.seq, state.kind())
            }
            other => println!("[wallboard] #{} {other:?}", e.seq),
        }
    }
}
