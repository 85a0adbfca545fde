//! Lines: list, open, close, forwarding, a line's status, taking up its calls.

use tapir_api::{ForwardCondition, ForwardRule};
use tapir_client::Client;

use crate::cli::Global;
use crate::failure::{Outcome, not_found, usage};
use crate::find::{line_id, line_open};
use crate::output::{calls_table, line_status_text, print, table};

/// `tapir lines`.
pub(crate) async fn lines(g: &Global, c: &Client) -> Outcome {
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

/// `tapir open`.
pub(crate) async fn open(g: &Global, c: &Client, line: String, monitor: bool) -> Outcome {
    let id = line_id(c, &line).await?;
    let open = c
        .open_line(id, if monitor { "monitor" } else { "owner" })
        .await?;
    print(g, &open, || format!("{}\n", open.line_handle))
}

/// `tapir close`.
pub(crate) async fn close(g: &Global, c: &Client, line: String) -> Outcome {
    let id = line_id(c, &line).await?;
    let opens = c.snapshot().await?.lines;
    let open = opens
        .iter()
        .find(|o| o.line == id)
        .ok_or_else(|| not_found(format!("line {line} is not open")))?;
    c.close_line(&open.line_handle).await?;
    print(g, open, || format!("closed {}\n", open.line_handle))
}

/// `tapir forward`.
pub(crate) async fn forward(
    g: &Global,
    c: &Client,
    line: String,
    to: Option<String>,
    when: String,
    rings: Option<u32>,
    dnd: bool,
) -> Outcome {
    let line_handle = line_open(c, Some(&line)).await?;
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

/// `tapir line`.
pub(crate) async fn line(g: &Global, c: &Client, line: String) -> Outcome {
    let line_handle = line_open(c, Some(&line)).await?;
    let st = c.line_status(&line_handle).await?;
    print(g, &st, || line_status_text(&st))
}

/// `tapir take-up`.
pub(crate) async fn take_up(g: &Global, c: &Client, line: String) -> Outcome {
    let id = line_id(c, &line).await?;
    let opens = c.snapshot().await?.lines;
    let line_handle = match opens.iter().find(|o| o.line == id) {
        Some(o) => o.line_handle.clone(),
        None => c.open_line(id, "monitor").await?.line_handle,
    };
    let calls = c.new_calls(&line_handle).await?;
    print(g, &calls, || calls_table(&calls))
}
