//! Connections are bounded: silent and trickling sockets are closed after the header-read
//! timeout (so is an idle keep-alive connection), and past the per-address and global caps a
//! connection is closed as soon as it is accepted, so a flood from one address leaves room
//! for everyone else.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::server::{TestServer, http};

/// A connection to the server from `from` (any 127.x address works on loopback).
async fn connect(s: &TestServer, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(s.running().addr).await.unwrap()
}

/// Whether the server closes `stream` within `within` (EOF or reset), reading what it sends.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_trickling_and_idle_connections_are_closed() {
    let s = TestServer::http(&["--header-read-timeout", "1s"]).await;
    let mut silent = connect(&s, "127.0.0.1").await;
    let mut trickle = connect(&s, "127.0.0.1").await;
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut idle = connect(&s, "127.0.0.1").await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200", "served, then kept alive");
    for (name, stream) in [
        ("silent", &mut silent),
        ("trickling", &mut trickle),
        ("idle", &mut idle),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "{name} socket still open"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_flood_of_silent_sockets_from_one_address_leaves_room_for_others() {
    // Loopback is not a trusted proxy here, so 127.0.0.2 is one client among others.
    let s = TestServer::http(&[
        "--max-connections-per-ip",
        "5",
        "--trusted-proxies",
        "10.9.9.9/32",
    ])
    .await;
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(connect(&s, "127.0.0.2").await);
    }
    // Five are held (the newest); each newcomer closed the oldest idle one.
    let mut closed = 0;
    for sock in &mut flood {
        if closed_within(sock, Duration::from_millis(300)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 35);
    let r = http()
        .get(s.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        r.is_ok_and(|r| r.status() == 200),
        "the flood stopped a legitimate request"
    );
    // Even a client sharing the flood's address (agents on one host, behind one NAT) is
    // served: a silent socket makes way for it.
    let mut legit = connect(&s, "127.0.0.2").await;
    legit
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), legit.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(flood);
    s.stop().await;
}

#[tokio::test]
async fn past_the_global_cap_the_oldest_idle_connections_are_closed() {
    let s = TestServer::http(&["--max-connections", "8"]).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect(&s, "127.0.0.3").await);
    }
    let mut closed = 0;
    for sock in &mut held {
        if closed_within(sock, Duration::from_millis(300)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 12, "no file descriptor is held past the cap");
    // Room again once they go.
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        if http()
            .get(s.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ok = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ok);
    s.stop().await;
}

#[tokio::test]
async fn out_of_file_descriptors_the_server_backs_off_quietly_and_recovers() {
    let env = crate::support::Env::sqlite();
    let log = env_dir_file(&env, "emfile.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64; exec "$0" serve --listen 127.0.0.1:0 --trusted-proxies 10.9.9.9/32 --header-read-timeout 30s"#)
        .arg(crate::support::BIN)
        .env("KEYWARD_DATABASE_URL", env.url())
        .env("KEYWARD_AUDIT_SIGNING_KEY", env.audit_key())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(pos) = text.find("listening on http://") {
            let rest = &text[pos + "listening on http://".len()..];
            break rest.split('/').next().unwrap().to_owned();
        }
        assert!(child.try_wait().unwrap().is_none(), "server exited: {text}");
        tokio::task::yield_now().await;
    };
    // More silent sockets than the process has descriptors left.
    let mut flood = Vec::new();
    for _ in 0..80 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(s) = socket.connect(addr.parse().unwrap()).await {
            flood.push(s);
        }
    }
    // Give the accept loop time to hit the limit repeatedly.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(flood);
    let mut served = false;
    for _ in 0..40 {
        let r = http()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(served, "not served after the flood went: {text}");
    let reports = text.matches("accept failed").count();
    assert!(
        (1..=2).contains(&reports),
        "{reports} accept-failure lines (a hot loop logs every 50 ms): {text}"
    );
}

fn env_dir_file(env: &crate::support::Env, name: &str) -> std::path::PathBuf {
    env.db_path().with_file_name(name)
}
