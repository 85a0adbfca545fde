//! Real host software against `modem-sim`: mgetty answers a call with caller ID, and `chat` (from ppp)
//! runs a dial script. These use real pseudo-terminals and real time, so they wait for conditions with
//! generous deadlines rather than for fixed times.
//!
//! The programs come from Debian (`mgetty`, `ppp`); `.ci/run` installs them and sets
//! `TAPIR_REQUIRE_PEERS=1`, which turns a missing program into a failure. Without it, a machine that
//! lacks them skips these tests and says so.
#![cfg(unix)]

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SIM: &str = env!("CARGO_BIN_EXE_modem-sim");

/// Whether `program` is there; when it is not, fails if peers are required, else says the test is
/// skipped.
fn have(program: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    assert!(
        std::env::var_os("TAPIR_REQUIRE_PEERS").is_none(),
        "{program} is required (TAPIR_REQUIRE_PEERS is set) but not installed"
    );
    eprintln!("SKIPPED: {program} is not installed (apt-get install mgetty ppp)");
    false
}

/// A running `modem-sim`, its standard input for commands and its standard output as lines.
struct Sim {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Sim {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(SIM)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("modem-sim starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sim = Self {
            child,
            stdin,
            lines,
        };
        for _ in &args[..args.iter().filter(|a| **a == "--pty").count()] {
            let line = sim.line_with("modem ", Duration::from_secs(10));
            assert!(line.contains(" on "), "{line}");
        }
        sim
    }

    /// Waits for an output line containing `text`; returns it.
    fn line_with(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with {text:?} from modem-sim; saw {seen:#?}"),
            }
        }
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("command");
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_file_text(path: &Path, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {text:?}; it has:\n{content}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mgetty_initialises_the_modem_sees_caller_id_answers_and_gets_connect() {
    if !have("/usr/sbin/mgetty") {
        return;
    }
    // mgetty wants its line under /dev and writes its log and lock as root.
    let tty = format!("ttyVtapir{}", std::process::id());
    let dev = format!("/dev/{tty}");
    let log = format!("/var/log/mgetty/mg_{tty}.log");
    let _ = std::fs::remove_file(&log);
    let mut sim = Sim::start(&["--pty", &dev, "--number", "5550100"]);
    let _mgetty = KillOnDrop(
        Command::new("/usr/sbin/mgetty")
            .args(["-x", "9", "-D", "-s", "38400", "-n", "2"])
            .args(["-m", "\"\" ATQ0V1H0 OK AT+VCID=1 OK"])
            .arg(&tty)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mgetty starts"),
    );
    // Initialised: mgetty has sent its init chat, got OK and gone to wait for a call.
    wait_for_file_text(Path::new(&log), "waiting...", Duration::from_secs(30));

    sim.command("ring 5550100 4155550100 ALICE");
    sim.line_with("ring-in 5550100: answered", Duration::from_secs(30));
    // After CONNECT mgetty prints its banner and login prompt, through the modem, to the caller.
    sim.line_with("login:", Duration::from_secs(30));

    let text = wait_for_file_text(Path::new(&log), "CONNECT 33600", Duration::from_secs(5));
    for expected in [
        "send: ATQ0V1H0",
        "send: AT+VCID=1",
        "got: [0d][0a]RING",
        "CND: found: 4155550100",
        "CND: found: ALICE",
        "send: ATA",
    ] {
        assert!(
            text.contains(expected),
            "mgetty's log lacks {expected:?}:\n{text}"
        );
    }
    let _ = std::fs::remove_file(&log);
}

fn chat(pty: &str, script: &[&str]) -> Option<i32> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(pty)
            .expect("open the modem's pty")
    };
    let status = Command::new("/usr/sbin/chat")
        .arg("-t")
        .arg("25")
        .args(script)
        .stdin(open())
        .stdout(open())
        .status()
        .expect("chat runs");
    status.code()
}

#[test]
fn chat_dials_a_number_that_answers_and_aborts_on_busy() {
    if !have("/usr/sbin/chat") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tapir-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pty = dir.join("modem");
    let pty = pty.to_str().expect("utf-8 path");
    let _sim = Sim::start(&[
        "--pty",
        pty,
        "--number",
        "5550200",
        "--far-end",
        "5551234=modem",
        "--far-end",
        "5550000=busy",
    ]);
    assert_eq!(
        chat(pty, &["", "ATZ", "OK", "ATDT5551234", "CONNECT", ""]),
        Some(0),
        "the dial script reaches CONNECT"
    );
    // Hang up (the escape needs a second of silence on each side), then a busy number: chat's exit
    // status 4 means the first ABORT string (BUSY) was seen.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        chat(
            pty,
            &[
                "ABORT",
                "BUSY",
                "",
                "+++\\c",
                "OK",
                "ATH",
                "OK",
                "ATDT5550000",
                "CONNECT"
            ]
        ),
        Some(4),
        "BUSY aborts the dial script"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
