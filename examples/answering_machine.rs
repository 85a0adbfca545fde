//! An answering machine on a simulated voice modem: it waits for a call, prints the caller ID the modem
//! reports between the first and second ring, answers in voice mode, prints the keys the caller presses,
//! and hangs up when the caller does.
//!
//! The caller is simulated too (a voice party who presses `4`, `2`, `#` and hangs up). Run it with
//! `cargo run --example answering_machine`.

use std::time::Duration;

use tapir::core::info::{InfoChange, Presentation};
use tapir::core::media::MediaModes;
use tapir::core::params::DigitMode;
use tapir::core::state::CallStateKind;
use tapir::{Engine, Event, LineEvent, OpenOptions};
use tapir_modem::{CallerId, ModemProvider, Network, RingIn, SimModem};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(level) = std::env::var("TAPIR_LOG") {
        let level: tracing::Level = level.parse()?;
        tracing_subscriber::fmt().with_max_level(level).init();
    }

    let network = Network::new();
    let (port, _modem) = SimModem::builder().attach(&network, "5550100")?;
    let engine = Engine::builder()
        .provider(
            ModemProvider::over(port)
                .number("5550100")
                .incoming_media(MediaModes::INTERACTIVE_VOICE)
                .build(),
        )
        .build()
        .await?;
    let machine = engine.logon("answering-machine").await?;
    machine
        .open_line(
            engine.lines()[0].id,
            OpenOptions::owner().media_modes(MediaModes::INTERACTIVE_VOICE),
        )
        .await?;
    println!("waiting for calls on 5550100");

    let _caller = network.ring_in(
        "5550100",
        RingIn::voice(CallerId::named("4155550123", "ALICE"))
            .presses("42#")
            .hangs_up_after(Duration::from_secs(2)),
    )?;

    let mut keys = String::new();
    while let Some(e) = machine.next_event().await {
        match e.event {
            Event::Line {
                event: LineEvent::Ringing { count, .. },
                ..
            } => println!("ring {}", count + 1),
            Event::CallInfo { call, changed } if changed.contains(InfoChange::CALLER_ID) => {
                let caller = machine.call_info(call)?.info.caller;
                match caller.presentation {
                    Presentation::Blocked => println!("caller ID: withheld"),
                    Presentation::OutOfArea => println!("caller ID: out of area"),
                    _ => println!(
                        "caller ID: {} {}",
                        caller.number.as_deref().unwrap_or("?"),
                        caller.name.as_deref().unwrap_or("")
                    ),
                }
                machine.answer(call).await?;
                machine.monitor_digits(call, Some(DigitMode::Dtmf)).await?;
                println!("answered; listening for keys");
            }
            Event::Digit { digit, .. } => {
                keys.push(digit);
                println!("key {digit}");
            }
            Event::CallState { call, state, .. } => match state.kind() {
                CallStateKind::Disconnected => {
                    println!("caller hung up");
                    machine.drop_call(call).await?;
                }
                CallStateKind::Idle => {
                    machine.deallocate(call)?;
                    break;
                }
                _ => {}
            },
            _ => {}
        }
    }
    println!("message from the caller: keys {keys:?}");
    machine.logoff().await;
    engine.shutdown().await;
    if keys != "42#" {
        return Err(format!("expected the keys 42#, heard {keys:?}").into());
    }
    Ok(())
}
