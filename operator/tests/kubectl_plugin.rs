//! `kubectl ruche` as a user runs it: clear errors before and without a cluster. Its commands
//! against live objects are checked by hand on the loopback API server (see the README).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn plugin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-ruche"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .output()
        .expect("kubectl-ruche runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_bad_deadline_is_refused_before_any_cluster_is_reached() {
    let (code, out, err) = plugin(&["drain", "visio-fr-par-1-0", "--deadline", "soon"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(
        err.trim(),
        "error: --deadline \"soon\": not a duration such as 30m, 2h or 1h30m"
    );
}

#[test]
fn no_cluster_is_said_plainly() {
    let (code, _, err) = plugin(&["status"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: no cluster to talk to: "), "{err}");
    let (code, _, err) = plugin(&["--kubeconfig", "/nonexistent/config", "status"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: --kubeconfig /nonexistent/config: "),
        "{err}"
    );
}

#[test]
fn follows_kubectl_conventions() {
    let (code, out, _) = plugin(&["--help"]);
    assert_eq!(code, 0);
    for flag in ["--kubeconfig", "--context", "--namespace", "--output"] {
        assert!(out.contains(flag), "{flag} missing from:\n{out}");
    }
    for command in [
        "status", "explain", "drain", "undrain", "evacuate", "token", "top",
    ] {
        assert!(out.contains(command), "{command} missing from:\n{out}");
    }
    let (code, _, err) = plugin(&["-o", "table", "status"]);
    assert_eq!(code, 2, "clap refuses an unknown output");
    assert!(err.contains("'table'"), "{err}");
}
