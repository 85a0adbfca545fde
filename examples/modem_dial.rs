//! Two applications, two simulated modems, one simulated telephone network: the first application dials
//! out through its modem; the second application's modem rings, and the second application answers. Both
//! modems train and report `CONNECT`; the caller hangs up after a moment online.
//!
//! Every byte between the providers and the modems is real AT conversation (set `TAPIR_LOG=debug` to see
//! it). Run it with `cargo run --example modem_dial`.

use std::time::Duration;

use tapir::core::media::MediaModes;
use tapir::core::state::CallStateKind;
use tapir::{Engine, Event, MakeCallParams, OpenOptions, Session};
use tapir_modem::{ModemProvider, Network, SimModem};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(level) = std::env::var("TAPIR_LOG") {
        let level: tracing::Level = level.parse()?;
        tracing_subscriber::fmt().with_max_level(level).init();
    }

    let network = Network::new();
    let (port_a, _modem_a) = SimModem::builder().attach(&network, "5550100")?;
    let (port_b, _modem_b) = SimModem::builder().attach(&network, "5550200")?;
    let engine = Engine::builder()
        .provider(
            ModemProvider::over(port_a)
                .name("modem-a")
                .number("5550100")
                .build(),
        )
        .provider(
            ModemProvider::over(port_b)
                .name("modem-b")
                .number("5550200")
                .build(),
        )
        .build()
        .await?;
    for line in engine.lines() {
        println!("{}: {} via {}", line.id, line.caps.name, line.provider_name);
    }

    let caller = engine.logon("dialer").await?;
    let answerer = engine.logon("answerer").await?;
    let out_line = caller
        .open_line(engine.lines()[0].id, OpenOptions::none())
        .await?;
    answerer
        .open_line(engine.lines()[1].id, OpenOptions::owner())
        .await?;
    let answering = tokio::spawn(answer_one(answerer.clone()));

    let call = caller
        .make_call_with(
            out_line,
            MakeCallParams {
                media_mode: Some(MediaModes::DATA_MODEM),
                ..MakeCallParams::to("5550200")
            },
        )
        .await?;
    println!(
        "[dialer]   dialling 5550200 (call ID {})",
        caller.call_info(call)?.call_id()
    );
    loop {
        match caller.next_event().await {
            Some(e) => {
                println!("[dialer]   #{:<3} {:?}", e.seq, e.event);
                if let Event::CallState { state, .. } = e.event {
                    match state.kind() {
                        CallStateKind::Connected => break,
                        CallStateKind::Disconnected => return Err("the call failed".into()),
                        _ => {}
                    }
                }
            }
            None => return Err("the session ended".into()),
        }
    }
    println!("[dialer]   online; hanging up in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
    caller.drop_call(call).await?;
    caller.deallocate(call)?;
    println!("[dialer]   hung up");

    answering.await??;
    caller.logoff().await;
    answerer.logoff().await;
    println!("engine holds {:?}", engine.stats());
    engine.shutdown().await;
    Ok(())
}

async fn answer_one(session: Session) -> Result<(), tapir::Error> {
    while let Some(e) = session.next_event().await {
        println!("[answerer] #{:<3} {:?}", e.seq, e.event);
        if let Event::CallState { call, state, .. } = e.event {
            match state.kind() {
                CallStateKind::Offering => {
                    let from = session.call_info(call)?.info.caller;
                    println!(
                        "[answerer] call from {}; answering",
                        from.number.as_deref().unwrap_or("an unknown number")
                    );
                    // Returns once the modems have trained and the modem said CONNECT.
                    session.answer(call).await?;
                    println!("[answerer] connected");
                }
                CallStateKind::Disconnected => session.drop_call(call).await?,
                CallStateKind::Idle => {
                    session.deallocate(call)?;
                    return Ok(());
                }
                _ => {}
            }
        }
    }
    Ok(())
}
