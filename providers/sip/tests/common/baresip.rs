//! baresip as a real phone in tests: a config directory of its own, its SIP trace in a log, and its
//! `ctrl_tcp` socket (netstring-framed JSON) for commands and events.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Scratch, free_port};

/// A running baresip, killed when dropped.
pub struct Baresip {
    child: tokio::process::Child,
    pub sip_port: u16,
    ctrl: tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
    events: Arc<Mutex<Vec<Value>>>,
    log: PathBuf,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Ports baresip binds: its SIP port, the next one (it opens TLS there), the control socket and an
/// RTP range.
fn free_ports() -> (u16, u16, u16) {
    loop {
        let sip = free_port();
        let next = std::net::TcpListener::bind(("127.0.0.1", sip + 1)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", sip + 1)).is_ok();
        if next {
            return (sip, free_port(), free_port());
        }
    }
}

impl Baresip {
    /// A phone that registers `account` (a baresip accounts line, `{sip}` standing for its own SIP
    /// port) and answers calls as the line says.
    pub async fn start(dir: &Scratch, name: &str, account: &str) -> Self {
        let home = dir.0.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let (sip, ctrl, rtp) = free_ports();
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip}\nnet_interface 127.0.0.1\n\
             audio_player aubridge,x\naudio_source aubridge,x\naudio_alert aubridge,x\n\
             rtp_ports {rtp}-{}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\n\
             module aubridge.so\nmodule account.so\nmodule ctrl_tcp.so\nmodule menu.so\n\
             module uuid.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\nsip_verify_server no\n",
            rtp + 40
        );
        std::fs::write(home.join("config"), config).unwrap();
        std::fs::write(home.join("accounts"), format!("{account}\n")).unwrap();
        let log = home.join("trace.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new("baresip")
            .arg("-f")
            .arg(&home)
            .arg("-s")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("baresip starts");
        // Its control socket comes up once it has loaded its modules.
        let mut stream = None;
        for _ in 0..200 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl)).await {
                stream = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let stream = stream.expect("baresip's control socket");
        let (mut read, write) = stream.into_split();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = read.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                // Netstrings: LEN ":" JSON ","
                while let Some(colon) = buf.iter().position(|b| *b == b':') {
                    let Some(len) = std::str::from_utf8(&buf[..colon])
                        .ok()
                        .and_then(|l| l.parse::<usize>().ok())
                    else {
                        buf.clear();
                        break;
                    };
                    if buf.len() < colon + 1 + len + 1 {
                        break;
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&buf[colon + 1..colon + 1 + len])
                    {
                        sink.lock().unwrap().push(v);
                    }
                    buf.drain(..colon + 1 + len + 1);
                }
            }
        });
        Self {
            child,
            sip_port: sip,
            ctrl: tokio::sync::Mutex::new(write),
            events,
            log,
        }
    }

    /// Sends a command (`dial`, `hangup`, `accept` …).
    pub async fn command(&self, command: &str, params: &str) {
        let msg =
            serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
        let frame = format!("{}:{msg},", msg.len());
        self.ctrl
            .lock()
            .await
            .write_all(frame.as_bytes())
            .await
            .unwrap();
    }

    /// The events of this type seen so far.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    }

    /// Waits (up to `secs`) until `n` events of `kind` were seen.
    pub async fn wait_for(&self, kind: &str, n: usize, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while self.events(kind).len() < n {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "baresip on {} saw {} of {n} {kind}; events: {:?}\n{}",
                    self.sip_port,
                    self.events(kind).len(),
                    self.events.lock().unwrap(),
                    self.trace()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its SIP trace and log so far.
    pub fn trace(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to `secs`) until the trace contains `text` at least `n` times.
    pub async fn wait_trace(&self, text: &str, n: usize, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while self.trace().matches(text).count() < n {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "baresip on {} never showed {text:?} {n} times:\n{}",
                    self.sip_port,
                    self.trace()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
