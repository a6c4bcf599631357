//! The `ruche-media-node` binary as a pod runs it: configuration errors, SIGTERM drain and exit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::large_futures)]

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{ADMIN_TOKEN, Client, SECRET, http};

fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Process {
    child: Child,
    http: SocketAddr,
    admin: SocketAddr,
    key: ruche_media_node::token::TokenKey,
    dir: std::path::PathBuf,
}

impl Process {
    fn start(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ruche-mn-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key"), SECRET).unwrap();
        std::fs::write(dir.join("admin"), format!("{ADMIN_TOKEN}\n")).unwrap();
        let (http, admin, media) = (free_tcp(), free_tcp(), free_udp());
        let child = Command::new(env!("CARGO_BIN_EXE_ruche-media-node"))
            .args([
                "--media-bind",
                &media.to_string(),
                "--http-bind",
                &http.to_string(),
                "--admin-bind",
                &admin.to_string(),
            ])
            .args([
                "--token-key-file",
                dir.join("key").to_str().unwrap(),
                "--admin-token-file",
                dir.join("admin").to_str().unwrap(),
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        Self {
            child,
            http,
            admin,
            key: ruche_media_node::token::TokenKey::hmac(SECRET).unwrap(),
            dir,
        }
    }

    async fn ready(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.admin).await.is_ok()
                && http(self.admin, "GET", "/livez", None, None).await.0 == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the media node did not come up");
    }

    fn token(&self, room: &str, who: &str) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        self.key
            .mint(&ruche_media_node::token::Claims::new(who, room, exp))
            .unwrap()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit status and how long it took.
    fn wait_exit(&mut self, within: Duration) -> Option<(i32, Duration)> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status.code().unwrap_or(-1), start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn output(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut out);
        }
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--advertise", "not-an-ip"],
            "--advertise not-an-ip: expected an IP address or IP:port",
        ),
        (
            &["--token-key-file", "/nonexistent/key"],
            "--token-key-file /nonexistent/key",
        ),
        (
            &["--media-bind", "127.0.0.1:99999"],
            "invalid value '127.0.0.1:99999' for '--media-bind",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_ruche-media-node"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(
            text.contains(expected),
            "{args:?}: expected `{expected}` in:\n{text}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ruche-media-node"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token-key-file is required"),
        "production mode needs a key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_an_idle_node_exits_at_once() {
    let mut p = Process::start(&["--dev"]);
    p.ready().await;
    p.sigterm();
    let exit = p.wait_exit(Duration::from_secs(5));
    let output = p.output();
    let (code, took) = exit.unwrap_or_else(|| panic!("did not exit:\n{output}"));
    assert_eq!(code, 0, "{output}");
    assert!(
        took < Duration::from_secs(3),
        "an empty node exits within a tick of SIGTERM: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_live_rooms_and_exits_when_the_last_one_ends() {
    let mut p = Process::start(&["--dev", "--drain-timeout-seconds", "60"]);
    p.ready().await;
    let url = format!("ws://{}/ws", p.http);
    let alice = Client::join(&url, "r1", &p.token("r1", "alice"))
        .await
        .expect("joins");
    p.sigterm();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "the node keeps serving its live room"
    );
    let (_, status) = http(p.admin, "GET", "/v1/status", None, Some(ADMIN_TOKEN)).await;
    assert_eq!(status["phase"], "Draining", "{status}");
    let refused = Client::join(&url, "r2", &p.token("r2", "bob"))
        .await
        .err()
        .expect("no new room on a draining node");
    assert_eq!(refused["code"], "draining");
    let (code, _) = http(p.admin, "DELETE", "/v1/drain", None, Some(ADMIN_TOKEN)).await;
    assert_eq!(code, 200);
    let (_, status) = http(p.admin, "GET", "/v1/status", None, Some(ADMIN_TOKEN)).await;
    assert_eq!(
        status["phase"], "Draining",
        "a drain started by SIGTERM cannot be cancelled: the pod is going"
    );
    alice.close().await;
    let exit = p.wait_exit(Duration::from_secs(5));
    let output = p.output();
    let (code, _) = exit.unwrap_or_else(|| panic!("did not exit once empty:\n{output}"));
    assert_eq!(code, 0, "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_at_the_deadline_even_with_rooms_live() {
    let mut p = Process::start(&["--dev", "--drain-timeout-seconds", "2"]);
    p.ready().await;
    let url = format!("ws://{}/ws", p.http);
    let alice = Client::join(&url, "r1", &p.token("r1", "alice"))
        .await
        .expect("joins");
    let started = Instant::now();
    p.sigterm();
    let exit = p.wait_exit(Duration::from_secs(8));
    let output = p.output();
    let (code, _) = exit.unwrap_or_else(|| panic!("did not exit at the deadline:\n{output}"));
    assert_eq!(code, 0, "{output}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "exit at the 2 s deadline, took {took:?}"
    );
    assert!(
        support::eventually(Duration::from_secs(3), || alice
            .messages_of("error")
            .iter()
            .any(|e| e["code"] == "unavailable" && e["fatal"] == true))
        .await,
        "the participant is told the session ended: {:?}",
        alice.messages.lock().unwrap()
    );
    assert_eq!(
        alice.closed.lock().unwrap().clone(),
        Some((1001, "node stopping".to_string())),
        "then the close frame says the node stopped"
    );
}
