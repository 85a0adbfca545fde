//! The `tapird` binary: starts on the embedded default, answers health checks, stops cleanly on
//! SIGTERM, keeps its journal and route changes across a restart, and leaves a readable call record
//! database when killed with SIGKILL in the middle of a load.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use tapir_api::cdr::CdrQueryParams;

#[test]
fn tapird_starts_on_the_embedded_default_and_stops_on_sigterm() {
    let data = std::env::temp_dir().join(format!("tapird-start-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tapird"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("TAPIR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tapird");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("tapird listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let mut tcp = TcpStream::connect(&addr).expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""), "{response}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "tapird exits cleanly on SIGTERM: {exit:?}");
    assert!(
        data.join("tapird.db").exists(),
        "the store is in the data directory"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn tapird_refuses_a_bad_configuration_file_with_exit_code_2() {
    let dir = std::env::temp_dir().join(format!("tapird-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[services.pbx]\nkind = \"isdn\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tapird"))
        .args([
            "--config",
            path.to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("services.pbx.kind"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A running `tapird` process.
struct Daemon {
    child: std::process::Child,
    url: String,
}

impl Daemon {
    fn start(data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tapird"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("TAPIR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tapird");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .strip_prefix("tapird listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, url: addr }
    }

    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "tapird exits cleanly on SIGTERM: {exit:?}");
    }
}

async fn logon(url: &str) -> tapir_client::Client {
    tapir_client::Client::logon(
        url,
        &tapir_api::LogonRequest {
            application: "cli".into(),
            secret: "tapir-dev".into(),
            ..Default::default()
        },
    )
    .await
    .expect("log on")
}

async fn open(client: &tapir_client::Client, number: &str) -> String {
    let id = client
        .lines()
        .await
        .expect("lines")
        .into_iter()
        .find(|l| l.addresses.iter().any(|a| a == number))
        .expect("line")
        .id;
    client
        .open_line(id, "owner")
        .await
        .expect("open")
        .line_handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_journal_and_route_changes_survive_and_clients_log_on_again() {
    use tapir_api::EventKind;
    use tapir_client::StreamItem;
    let dir = std::env::temp_dir().join(format!("tapird-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // First run: a connected call, a route change, events read only part of the way.
    let first = Daemon::start(&dir);
    let client = logon(&first.url).await;
    let from = open(&client, "2001").await;
    open(&client, "2002").await;
    let mut events = client.events(0);
    let made = client.make_call(&from, "2002").await.expect("make");
    let offered = loop {
        match events.next().await {
            Some(Ok(StreamItem::Event(e))) => {
                if let EventKind::NewCall { call, .. } = e.kind
                    && call != made.call
                {
                    break call;
                }
            }
            other => panic!("expected events, got {other:?}"),
        }
    };
    let read_up_to = events.last_seq();
    drop(events);
    client.answer(&offered).await.expect("answer");
    client
        .set_route("voice.2003", "softphone")
        .await
        .expect("route");
    let old_token = client.token().to_owned();
    first.stop();

    // Second run on the same data directory.
    let second = Daemon::start(&dir);
    let old = tapir_client::Client::with_token(&second.url, &old_token).expect("client");
    let gone = old
        .lines()
        .await
        .expect_err("the log-on ended with the first run");
    assert_eq!(
        (gone.status(), gone.code()),
        (Some(410), Some("session_ended"))
    );
    // Its journal is still readable: every event after the last one read, once, in order, to the end.
    let mut rest = old.events(read_up_to);
    let mut seqs = Vec::new();
    let mut states = Vec::new();
    while let Some(item) = rest.next().await {
        match item.expect("stored events") {
            StreamItem::Event(e) => {
                seqs.push(e.seq);
                if let EventKind::CallState { call, state, .. } = e.kind
                    && call == offered
                {
                    states.push(state);
                }
            }
            StreamItem::Resync(_) => panic!("nothing was trimmed"),
        }
    }
    let expected: Vec<u64> = (read_up_to + 1..=read_up_to + seqs.len() as u64).collect();
    assert_eq!(seqs, expected);
    assert_eq!(
        states,
        ["offering", "connected"],
        "the answer made after the client stopped reading is there; the stream ends at the log-off"
    );

    let again = logon(&second.url).await;
    assert_ne!(
        again.logon_info().session_id,
        client.logon_info().session_id
    );
    assert!(
        again.calls().await.expect("calls").is_empty(),
        "live calls did not outlive the first run"
    );
    let routes = again.routes().await.expect("routes");
    let classes: Vec<(&str, &str)> = routes
        .routes
        .iter()
        .map(|r| (r.class.as_str(), r.application.as_str()))
        .collect();
    assert!(
        classes.contains(&("voice.2003", "softphone")),
        "the route set over the API survived: {classes:?}"
    );
    assert!(
        classes.contains(&("voice.2004", "reception")),
        "the configured route is still there: {classes:?}"
    );
    // The call live at the stop was dropped by the clean shutdown, and both its records were written
    // before the first run exited.
    let records = again
        .cdrs(&CdrQueryParams::default())
        .await
        .expect("records")
        .records;
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.iter().all(|r| r.call_id == made.call_id));
    assert!(records.iter().all(|r| r.disposition == "answered"));
    second.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_load_leaves_every_committed_call_record_readable() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tapir_cdr::{CdrQuery, CdrStore, SqliteStore};

    let data = std::env::temp_dir().join(format!("tapird-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut daemon = Daemon::start(&data);
    let client = logon(&daemon.url).await;
    // Four lines calling the busy number as fast as they can: one record per call.
    let completed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for number in ["2001", "2002", "2003", "2004"] {
        let line = open(&client, number).await;
        let (client, completed) = (client.clone(), completed.clone());
        load.push(tokio::spawn(async move {
            loop {
                let Ok(call) = client.make_call(&line, "5552000").await else {
                    return;
                };
                if client.drop_call(&call.call).await.is_err()
                    || client.deallocate(&call.call).await.is_err()
                {
                    return;
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // What the API answers was read back from the database, so it is committed.
    let newest = CdrQueryParams {
        limit: Some(1),
        ..Default::default()
    };
    let mut committed = 0;
    for _ in 0..3000 {
        let page = client.cdrs(&newest).await.expect("records");
        committed = page.records.first().map_or(0, |r| r.id);
        if committed >= 300 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(committed >= 300, "the load made records ({committed})");

    daemon.child.kill().expect("SIGKILL");
    daemon.child.wait().expect("reaped");
    let made = completed.load(Ordering::Relaxed);
    for task in load {
        task.abort();
    }

    let store = SqliteStore::open(Some(&data.join("cdr.db"))).expect("the database opens");
    assert!(store.integrity_ok().await.expect("checks"), "intact");
    let mut ids = Vec::new();
    let mut q = CdrQuery {
        limit: 1000,
        ..CdrQuery::default()
    };
    loop {
        let page = store.query(&q).await.expect("every record reads back");
        for r in &page.records {
            assert_eq!(r.record.disposition.name(), "busy");
            assert_eq!(r.record.owners, vec!["cli".to_string()]);
        }
        ids.extend(page.records.iter().map(|r| r.id));
        match page.next {
            Some(b) => q.before = Some(b),
            None => break,
        }
    }
    let on_disk = ids.len() as u64;
    assert!(
        on_disk >= committed,
        "every record committed before the kill is there: {on_disk} < {committed}"
    );
    ids.reverse();
    assert_eq!(
        ids,
        (1..=on_disk).collect::<Vec<_>>(),
        "no gaps: whole batches only"
    );
    // Calls whose drop had returned but whose record was still queued are the loss a crash costs.
    eprintln!(
        "kill -9: {made} calls completed, {on_disk} records on disk, {} lost",
        made.saturating_sub(on_disk)
    );
    let _ = std::fs::remove_dir_all(&data);
}
