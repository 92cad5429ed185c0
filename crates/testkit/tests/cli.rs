//! `testkit up`, as the scripts use it: it prints an address that answers, and a SIGTERM
//! stops the server with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `testkit up <server>`; returns the child and the line it printed.
fn up(server: &str) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testkit"))
        .args(["up", server])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run testkit");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read the address");
    (child, line.trim().to_owned())
}

/// SIGTERM, as a script's cleanup sends it; waits for the exit.
fn terminate(child: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "testkit exits cleanly on SIGTERM: {status}"
    );
}

fn answers_ping(port: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port")))
    else {
        return false;
    };
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

#[test]
fn up_redis_prints_a_url_that_answers_and_stops_on_sigterm() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        shortener_testkit::skip("testkit up redis", "redis-server is not installed");
        return;
    }
    let (mut child, url) = up("redis");
    let port = url
        .strip_prefix("redis://127.0.0.1:")
        .unwrap_or_else(|| panic!("a Redis URL, got {url:?}"))
        .to_owned();
    assert!(answers_ping(&port), "the printed server answers");
    terminate(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers_ping(&port) {
        assert!(Instant::now() < deadline, "the server stopped with testkit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn up_postgres_prints_the_url_of_an_empty_shortener_database() {
    if !std::path::Path::new("/usr/lib/postgresql").exists() {
        shortener_testkit::skip("testkit up postgres", "PostgreSQL is not installed");
        return;
    }
    let (mut child, url) = up("postgres");
    assert!(url.ends_with("/shortener"), "{url}");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the printed database answers");
    tokio::spawn(connection);
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(tables, 0, "empty");
    drop(client);
    terminate(&mut child);
}

#[test]
fn an_unknown_server_is_refused_with_the_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_testkit"))
        .args(["up", "mysql"])
        .output()
        .expect("run testkit");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("postgres|redis|kafka|cassandra"),
        "{stderr}"
    );
}
