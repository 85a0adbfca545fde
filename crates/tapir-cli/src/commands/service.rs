//! The service: status, call records, routes, translation, events, the log-on itself.

use tapir_api::TranslateRequest;
use tapir_client::{Client, StreamItem};

use crate::cli::{CdrsArgs, Global, RouteChange};
use crate::failure::{Outcome, usage};
use crate::logon::session_file;
use crate::output::{cdrs_table, describe, print, table, when};

/// `tapir status`.
pub(crate) async fn status(g: &Global, c: &Client) -> Outcome {
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
                "FAULTS",
                "REFUSED",
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
                    r.faults.to_string(),
                    r.refused_reports.to_string(),
                    r.reason.clone().unwrap_or_default(),
                ]
            }),
        )
    })
}

/// `tapir cdrs`.
pub(crate) async fn cdrs(g: &Global, c: &Client, args: CdrsArgs) -> Outcome {
    let CdrsArgs {
        since,
        until,
        number,
        call_id,
        disposition,
        limit,
        all,
        format,
    } = args;
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
    if format == "csv" && !g.json() {
        print!("{}", tapir_api::cdr::csv_header());
        records
            .iter()
            .for_each(|r| print!("{}", tapir_api::cdr::csv_row(r)));
        return Ok(());
    }
    if format == "jsonl" && !g.json() {
        records
            .iter()
            .for_each(|r| print!("{}", tapir_api::cdr::jsonl_line(r)));
        return Ok(());
    }
    print(g, &records, || cdrs_table(&records))
}

/// `tapir routes`.
pub(crate) async fn routes(g: &Global, c: &Client, change: Option<RouteChange>) -> Outcome {
    let routes = match change {
        None => c.routes().await?,
        Some(RouteChange::Set { class, application }) => c.set_route(&class, &application).await?,
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

/// `tapir translate`.
pub(crate) async fn translate(
    g: &Global,
    c: &Client,
    address: String,
    cancel_call_waiting: bool,
    local: bool,
    long_distance: bool,
) -> Outcome {
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

/// `tapir session`.
pub(crate) async fn session(g: &Global, c: &Client) -> Outcome {
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

/// `tapir logoff`.
pub(crate) async fn logoff(g: &Global, c: &Client) -> Outcome {
    c.logoff().await?;
    let _ = std::fs::remove_file(session_file(g));
    if !g.json() {
        println!("logged off");
    }
    Ok(())
}

pub(crate) async fn events(g: &Global, c: &Client, follow: bool, after: u64) -> Outcome {
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
                if g.json() {
                    println!("{}", serde_json::to_string(&e).unwrap_or_default());
                } else {
                    println!("{:>6}  {}", e.seq, describe(&e.kind));
                }
                if until.is_some_and(|u| e.seq >= u) {
                    return Ok(());
                }
            }
            StreamItem::Resync(s) => {
                if g.json() {
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
