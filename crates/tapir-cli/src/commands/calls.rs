//! One call at a time: make, list, answer, hold, drop, transfer, park, pickup, digits, …

use tapir_api::{Call, CallPrivilege, CompletionMode, DigitMode, MakeCallRequest};
use tapir_client::{Client, Pickup};

use crate::cli::Global;
use crate::failure::{Outcome, not_found, usage};
use crate::find::{find_call, line_open};
use crate::output::{calls_table, print, short};

/// `tapir call`.
pub(crate) async fn call(
    g: &Global,
    c: &Client,
    number: String,
    line: Option<String>,
    translate: bool,
) -> Outcome {
    let line_handle = line_open(c, line.as_deref()).await?;
    let call = c
        .make_call_with(&MakeCallRequest {
            line_handle,
            destination: Some(number),
            translate,
        })
        .await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir calls`.
pub(crate) async fn calls(g: &Global, c: &Client) -> Outcome {
    let calls = c.calls().await?;
    print(g, &calls, || calls_table(&calls))
}

/// `tapir answer`.
pub(crate) async fn answer(g: &Global, c: &Client, call: Option<String>) -> Outcome {
    let handle = match call {
        Some(h) => find_call(c, &h).await?,
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

/// `tapir hold`.
pub(crate) async fn hold(g: &Global, c: &Client, call: String) -> Outcome {
    let call = c.hold(&find_call(c, &call).await?).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir unhold`.
pub(crate) async fn unhold(g: &Global, c: &Client, call: String) -> Outcome {
    let call = c.unhold(&find_call(c, &call).await?).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir drop`.
pub(crate) async fn drop(g: &Global, c: &Client, call: String, keep: bool) -> Outcome {
    let handle = find_call(c, &call).await?;
    let call = c.drop_call(&handle).await?;
    if !keep {
        c.deallocate(&handle).await?;
    }
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir transfer`.
pub(crate) async fn transfer(g: &Global, c: &Client, call: String, destination: String) -> Outcome {
    let call = c
        .blind_transfer(&find_call(c, &call).await?, &destination)
        .await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir park`.
pub(crate) async fn park(g: &Global, c: &Client, call: String, orbit: Option<String>) -> Outcome {
    let parked = c
        .park(&find_call(c, &call).await?, orbit.as_deref())
        .await?;
    print(g, &parked, || format!("parked in orbit {}\n", parked.orbit))
}

/// `tapir unpark`.
pub(crate) async fn unpark(g: &Global, c: &Client, orbit: String, line: Option<String>) -> Outcome {
    let line_handle = line_open(c, line.as_deref()).await?;
    let call = c.unpark(&line_handle, &orbit).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir pickup`.
pub(crate) async fn pickup(
    g: &Global,
    c: &Client,
    station: Option<String>,
    group: Option<String>,
    line: Option<String>,
) -> Outcome {
    let line_handle = line_open(c, line.as_deref()).await?;
    let target = match (&station, &group) {
        (Some(s), _) => Pickup::Station(s),
        (None, Some(gr)) => Pickup::Group(gr),
        (None, None) => return Err(usage("pickup needs --station or --group")),
    };
    let call = c.pickup(&line_handle, target).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir accept`.
pub(crate) async fn accept(g: &Global, c: &Client, call: String) -> Outcome {
    let call = c.accept(&find_call(c, &call).await?).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir reject`.
pub(crate) async fn reject(g: &Global, c: &Client, call: String) -> Outcome {
    let call = c.reject(&find_call(c, &call).await?).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir redirect`.
pub(crate) async fn redirect(g: &Global, c: &Client, call: String, destination: String) -> Outcome {
    let call = c
        .redirect(&find_call(c, &call).await?, &destination)
        .await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir dial`.
pub(crate) async fn dial(g: &Global, c: &Client, call: String, digits: String) -> Outcome {
    let call = c.dial(&find_call(c, &call).await?, &digits).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir digits`.
pub(crate) async fn digits(
    g: &Global,
    c: &Client,
    call: String,
    digits: String,
    pulse: bool,
) -> Outcome {
    let mode = if pulse {
        DigitMode::Pulse
    } else {
        DigitMode::Dtmf
    };
    let call = c
        .generate_digits_as(&find_call(c, &call).await?, &digits, mode)
        .await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir swap`.
pub(crate) async fn swap(g: &Global, c: &Client, active: String, held: String) -> Outcome {
    let active = find_call(c, &active).await?;
    let call = c.swap_hold(&active, &find_call(c, &held).await?).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir privilege`.
pub(crate) async fn privilege(g: &Global, c: &Client, call: String, privilege: String) -> Outcome {
    let privilege = privilege
        .parse::<CallPrivilege>()
        .map_err(|e| usage(e.to_string()))?;
    let call = c
        .set_call_privilege(&find_call(c, &call).await?, privilege)
        .await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir handoff`.
pub(crate) async fn handoff(g: &Global, c: &Client, call: String, application: String) -> Outcome {
    let call = c.handoff(&find_call(c, &call).await?, &application).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir secure`.
pub(crate) async fn secure(g: &Global, c: &Client, call: String) -> Outcome {
    let call = c.secure_call(&find_call(c, &call).await?).await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir callback`.
pub(crate) async fn callback(g: &Global, c: &Client, call: String, mode: String) -> Outcome {
    let mode = mode
        .parse::<CompletionMode>()
        .map_err(|e| usage(e.to_string()))?;
    let done = c.complete_call(&find_call(c, &call).await?, mode).await?;
    print(g, &done, || format!("completion {}\n", done.completion))
}

/// `tapir cancel-callback`.
pub(crate) async fn cancel_callback(
    g: &Global,
    c: &Client,
    line: String,
    completion: u32,
) -> Outcome {
    let line_handle = line_open(c, Some(&line)).await?;
    c.cancel_call_completion(&line_handle, completion).await?;
    if !g.json() {
        println!("cancelled completion {completion}");
    }
    Ok(())
}
