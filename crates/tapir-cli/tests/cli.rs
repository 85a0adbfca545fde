//! `tapir` against a running tapird (in this process, on loopback): the tour of the README, JSON for
//! scripts, one log-on across invocations, and the exit codes.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use tapir_config::Config;
use tokio::net::TcpListener;

/// tapird on the embedded default: the configuration the README's tour runs on.
async fn tapird() -> tapir_server::Spawned {
    tapir_server::Spawned::start(Config::embedded())
        .await
        .expect("tapird")
}

struct Cli {
    url: String,
    session_file: PathBuf,
}

impl Cli {
    fn new(url: &str, name: &str) -> Self {
        let session_file =
            std::env::temp_dir().join(format!("tapir-cli-test-{}-{name}.json", std::process::id()));
        let _ = std::fs::remove_file(&session_file);
        Self {
            url: url.to_owned(),
            session_file,
        }
    }

    /// Runs `tapir ARGS`; (exit code, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tapir"));
        cmd.args(args)
            .env("TAPIR_URL", &self.url)
            .env("TAPIR_SESSION_FILE", &self.session_file)
            .env_remove("TAPIR_APP")
            .env_remove("TAPIR_SECRET")
            .env_remove("TAPIR_PROFILE");
        let out: Output = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("run tapir");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `tapir --json ARGS`, expecting success; the JSON.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, out, err) = self.run(&all).await;
        assert_eq!(code, 0, "tapir {args:?}: {err}");
        serde_json::from_str(&out).expect("JSON output")
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.session_file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tour_works_and_one_log_on_lasts_across_invocations() {
    let svc = tapird().await;
    let cli = Cli::new(&svc.url(), "tour");

    let (code, out, _) = cli.run(&["status"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("ID "), "a table with a header: {out}");
    assert!(
        out.contains("simswitch") && out.contains("available"),
        "{out}"
    );

    let session = cli.json(&["session"]).await["session_id"].clone();
    let (code, out, _) = cli.run(&["lines"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("Extension 2002 (Bob)"), "{out}");
    let open = cli.json(&["open", "2002"]).await;
    assert!(
        open["line_handle"]
            .as_str()
            .is_some_and(|h| h.starts_with("line:"))
    );

    let made = cli.json(&["call", "2002", "--line", "2001"]).await;
    let answered = cli.json(&["answer"]).await;
    assert_eq!(answered["state"], "connected");
    assert_eq!(
        answered["call_id"], made["call_id"],
        "both ends: one call ID"
    );
    assert_ne!(answered["call"], made["call"]);
    assert_eq!(
        cli.json(&["session"]).await["session_id"],
        session,
        "every invocation used the same log-on"
    );

    let calls = cli.json(&["calls"]).await;
    assert_eq!(calls.as_array().map(Vec::len), Some(2));
    let (code, out, _) = cli.run(&["calls"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("connected") && out.contains("CALL ID"),
        "{out}"
    );

    let handle = answered["call"].as_str().expect("handle");
    let short = &handle["call:".len().."call:".len() + 6];
    assert_eq!(cli.json(&["hold", short]).await["state"], "on_hold");
    assert_eq!(cli.json(&["unhold", handle]).await["state"], "connected");
    assert_eq!(cli.json(&["drop", short]).await["state"], "idle");

    let (code, out, _) = cli.run(&["--json", "events"]).await;
    assert_eq!(code, 0);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .any(|e| e["call"] == handle && e["state"] == "on_hold"),
        "the hold is in the events"
    );

    let t = cli.json(&["translate", "+1 (425) 555-0100"]).await;
    assert_eq!(
        t["dialable"], "95550100",
        "Seattle: access code 9, then a local number"
    );
    let routes = cli.json(&["routes"]).await;
    assert_eq!(routes["default"], "first-owner");

    // Call history: the dropped call's record (written off the call's path, so it may take a moment).
    let mut records = Value::Null;
    for _ in 0..200 {
        records = cli.json(&["cdrs", "--since", "1h"]).await;
        if records.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let first = &records.as_array().expect("an array of records")[0];
    assert_eq!(first["disposition"], "answered", "{first}");
    let (code, table, _) = cli.run(&["cdrs", "--number", "200"]).await;
    assert_eq!(code, 0);
    assert!(table.starts_with("STARTED (UTC)"), "{table}");
    assert!(table.contains("answered"), "{table}");
    for row in table.lines().skip(1) {
        assert!(
            row.contains("2001 (Alice)") && row.contains("2002 (Bob)") && !row.contains('→'),
            "each leg of Alice's call to Bob reads FROM Alice TO Bob: {table}"
        );
    }
    let (code, csv, _) = cli.run(&["cdrs", "--format", "csv", "--all"]).await;
    assert_eq!(code, 0);
    assert!(csv.starts_with("id,call_id,related_call_ids,"), "{csv}");
    assert_eq!(
        csv.lines().count(),
        1 + records.as_array().map_or(0, Vec::len)
    );
    let (code, _, err) = cli.run(&["cdrs", "--since", "yesterday"]).await;
    assert_eq!(code, 2, "a bad --since is a usage error: {err}");
    let (code, _, err) = cli.run(&["cdrs", "--disposition", "hung_up"]).await;
    assert_eq!(code, 1, "the service refuses a bad disposition: {err}");
    assert!(err.contains("disposition"), "{err}");

    let (code, _, _) = cli.run(&["logoff"]).await;
    assert_eq!(code, 0);
    assert!(!cli.session_file.exists(), "log-off forgets the token");
    assert_ne!(
        cli.json(&["session"]).await["session_id"],
        session,
        "the next command logs on anew"
    );
    svc.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_what_went_wrong() {
    let svc = tapird().await;
    let cli = Cli::new(&svc.url(), "codes");

    let (code, _, err) = cli.run(&["hold", "not-a-handle"]).await;
    assert_eq!(code, 2, "bad command line: {err}");
    let (code, _, _) = cli.run(&["frobnicate"]).await;
    assert_eq!(code, 2);
    let (code, _, err) = cli.run(&["hold", "0123456789abcdef"]).await;
    assert_eq!(code, 5, "no such call: {err}");
    assert!(err.contains("invalid_call_handle"), "{err}");
    let (code, _, err) = cli.run(&["answer"]).await;
    assert_eq!(code, 5, "nothing to answer: {err}");
    let (code, _, err) = cli.run(&["open", "9999"]).await;
    assert_eq!(code, 5, "no such line: {err}");

    let made = cli.json(&["call", "5551000", "--line", "2001"]).await;
    let (code, _, err) = cli
        .run(&["answer", made["call"].as_str().expect("h")])
        .await;
    assert_eq!(
        code, 1,
        "answering one's own outgoing call is refused: {err}"
    );
    assert!(err.contains("invalid_call_state"), "{err}");

    let (code, _, err) = cli
        .run(&["--secret", "wrong", "--app", "softphone", "lines"])
        .await;
    assert_eq!(code, 4, "log-on refused: {err}");

    let nobody = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed = format!("http://{}", nobody.local_addr().expect("addr"));
    drop(nobody);
    let (code, _, err) = cli.run(&["--url", &closed, "status"]).await;
    assert_eq!(code, 3, "unreachable: {err}");
    svc.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_way_conference_forwarding_and_a_monitor_from_the_command_line() {
    let svc = tapird().await;
    let cli = Cli::new(&svc.url(), "conference");
    // As in the README's tour: Alice calls Bob, makes it a conference and adds Carol.
    cli.json(&["open", "2002"]).await;
    cli.json(&["call", "2002", "--line", "2001"]).await;
    cli.json(&["answer"]).await;
    cli.json(&["open", "2003"]).await;
    let setup = cli.json(&["conference", "2003", "--line", "2001"]).await;
    assert_eq!(
        setup["conference"]["state"], "on_hold_pending_conference",
        "{setup}"
    );
    let carol = cli.json(&["answer"]).await;
    assert_eq!(carol["called"]["name"], "Carol", "{carol}");
    let parties = cli.json(&["join", "--line", "2001"]).await;
    let states: Vec<&str> = parties
        .as_array()
        .expect("the conference's calls")
        .iter()
        .filter_map(|c| c["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["connected", "conferenced", "conferenced"],
        "{parties}"
    );
    let (code, table, err) = cli.run(&["parties", "--line", "2001"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        table.lines().count(),
        4,
        "a header and three calls: {table}"
    );

    // Another log-on of the same application takes up the calls on Alice's line.
    let watcher = Cli::new(&svc.url(), "conference-watcher");
    let taken = watcher.json(&["take-up", "2001"]).await;
    let taken = taken.as_array().expect("calls");
    assert_eq!(taken.len(), 3, "{taken:?}");
    assert!(taken.iter().all(|c| c["privilege"] == "monitor"));

    // Bob's line: do not disturb, its status, then cancelled.
    let st = cli.json(&["forward", "2002", "--dnd"]).await;
    assert_eq!(st["in_service"], true, "{st}");
    let (code, text, err) = cli.run(&["line", "2001"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("in service") && text.contains("2 opens"),
        "{text}"
    );
    cli.json(&["forward", "2002", "--cancel"]).await;
    let (code, _, err) = cli
        .run(&["forward", "2002", "--to", "2003", "--when", "sometimes"])
        .await;
    assert_eq!(code, 2, "a bad condition is a usage error: {err}");
    assert!(err.contains("unconditional"), "{err}");

    cli.run(&["logoff"]).await;
    watcher.run(&["logoff"]).await;
    svc.stop().await.expect("clean stop");
}
