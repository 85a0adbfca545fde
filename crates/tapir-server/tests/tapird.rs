//! The `tapird` binary: starts on the embedded default, answers health checks, and stops cleanly on
//! SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn tapird_starts_on_the_embedded_default_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tapird"))
        .args(["--listen", "127.0.0.1:0"])
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
