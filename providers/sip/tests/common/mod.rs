//! What the SIP provider's tests share: free ports, real peers (sipp, baresip), a test phone, waiting
//! on conditions with bounded time-outs.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

pub mod baresip;
pub mod phone;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tapir_provider::{EventLog, ProviderEvent};

/// Logs to stderr when `TAPIR_TEST_LOG` names a level (`debug`, `trace`), for a failing test.
pub fn log() {
    if let Ok(level) = std::env::var("TAPIR_TEST_LOG") {
        let level: tracing::Level = level.parse().unwrap_or(tracing::Level::DEBUG);
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (as far as anyone can tell before binding it).
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether a program is on this machine; with `TAPIR_REQUIRE_PEERS=1` (CI) a missing one fails the
/// test instead of skipping it.
pub fn peer(program: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var("TAPIR_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("{program} is required (TAPIR_REQUIRE_PEERS=1) but not installed");
    }
    if !found {
        eprintln!("skipped: {program} is not installed");
    }
    found
}

/// Waits (up to `secs`) until `f` holds.
pub async fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 15 s: three times a UDP transaction's longest linger, Timer K, and slack for a
/// loaded machine) until the provider holds no call, dialog or transaction; fails the test if it
/// still does.
pub async fn assert_quiet(provider: &tapir_sip::SipProvider) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !provider.is_quiet().await {
        if tokio::time::Instant::now() > deadline {
            panic!("the provider still holds a call, dialog or transaction after 15 s");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A scratch directory for a test's peers, removed at the end.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tapir-sip-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Scratch {
    /// How many times sipp's message traces (`-trace_msg`) here hold `text`.
    pub fn traced(&self, text: &str) -> usize {
        std::fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .matches(text)
                    .count()
            })
            .sum()
    }

    /// What the peers wrote into it: sipp's error logs and last screens, for a failure's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with("_errors.log") || name.ends_with("_screen.log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("== {name}\n"));
                    for l in tail.into_iter().rev() {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sipp process, killed when dropped.
pub struct Sipp {
    pub child: tokio::process::Child,
}

impl Sipp {
    pub fn spawn(dir: &Scratch, args: &[&str]) -> Self {
        let child = tokio::process::Command::new("sipp")
            .args(args)
            .args(["-nostdin", "-trace_err", "-trace_screen"])
            .current_dir(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("sipp starts");
        Self { child }
    }

    /// Waits for it to exit (up to `secs`); its exit status: 0 when every call succeeded.
    pub async fn finish(&mut self, secs: u64) -> i32 {
        match tokio::time::timeout(Duration::from_secs(secs), self.child.wait()).await {
            Ok(Ok(status)) => status.code().unwrap_or(-1),
            _ => {
                let _ = self.child.start_kill();
                -2
            }
        }
    }
}

/// The states reported for every leg, in order.
pub fn states(log: &Arc<EventLog>) -> Vec<ProviderEvent> {
    log.take()
}
