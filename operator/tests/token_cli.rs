//! `ruche-operator token`: the token it prints is one a media node accepts for that room.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use ruche_crds::token::TokenKey;

const SECRET: &str = "cli-test-secret-cli-test-secret-0123456789";

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ruche-operator"))
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn mints_a_token_the_node_accepts_for_that_room_only() {
    let key_file = std::env::temp_dir().join(format!("ruche-token-cli-{}", std::process::id()));
    std::fs::write(&key_file, SECRET).unwrap();
    let (code, token, stderr) = run(&[
        "weekly-sync",
        "alice@interieur.gouv.fr",
        "--name",
        "Alice",
        "--no-publish",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let key = TokenKey::hmac(SECRET.as_bytes()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = key.verify_for_room(&token, "weekly-sync", now).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.name.as_deref()),
        ("alice@interieur.gouv.fr", Some("Alice"))
    );
    assert!(!claims.grants.publish && claims.grants.subscribe);
    assert!(
        claims.exp >= now + 3590 && claims.exp <= now + 3610,
        "an hour by default"
    );
    assert_eq!(
        key.verify_for_room(&token, "other-room", now)
            .unwrap_err()
            .reason(),
        "wrong_room"
    );
    let _ = std::fs::remove_file(key_file);
}

#[test]
fn without_a_key_it_says_what_to_give() {
    let (code, stdout, stderr) = run(&["r", "i"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("give --key-file, or --fleet to read the key from the cluster"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["r", "i", "--key-file", "/nonexistent/key"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--key-file /nonexistent/key: cannot read"),
        "{stderr}"
    );
}
