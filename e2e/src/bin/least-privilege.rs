//! `least-privilege [--used-only] AUDIT_LOG`: after an end-to-end run on a control plane that audited it
//! (`scripts/audited-k8s.sh`), proves the operator's RBAC is least privilege: every permission
//! of `manifests/rbac/` and of the chart's `templates/rbac.yaml` was used by an operator, no
//! operator request was denied, and the only Secrets operators touched are their fleets' own.
//! Prints each permission with how many requests used it; exits 1 when the proof fails. With
//! `--used-only` (a run that exercises part of the operator, as the chaos suite does), unused
//! permissions are listed but do not fail it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ruche_e2e::audit::{self, Grant, Report};

/// The ServiceAccounts operators run as: `manifests/rbac`'s, and the chart's for a release
/// named `ruche` (the end-to-end suite's).
const OPERATORS: [&str; 2] = ["ruche-operator", "ruche"];

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let used_only = args.first().is_some_and(|a| a == "--used-only");
    if used_only {
        args.remove(0);
    }
    let [log] = args.as_slice() else {
        eprintln!("usage: least-privilege [--used-only] AUDIT_LOG");
        return ExitCode::from(2);
    };
    match run(Path::new(log), used_only) {
        Ok(report) if report.holds() || (used_only && report.held_as_used()) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("least-privilege: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(log: &Path, used_only: bool) -> Result<Report, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut grants: Vec<Grant> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("manifests/rbac"))
        .map_err(|e| format!("manifests/rbac: {e}"))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files.push(root.join("charts/ruche/templates/rbac.yaml"));
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        grants.extend(audit::grants(&name, &text).map_err(|e| e.to_string())?);
    }
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let log = audit::read_log(&text, |user| audit::is_operator(user, &OPERATORS))
        .map_err(|e| e.to_string())?;
    let report = audit::check(&grants, &log);
    print(&report, &grants, used_only);
    Ok(report)
}

fn print(report: &Report, grants: &[Grant], used_only: bool) {
    println!(
        "least privilege: {} requests of the operators' ServiceAccounts ({}) in the audit log",
        report.requests,
        OPERATORS.join(", ")
    );
    let mut seen = std::collections::BTreeSet::new();
    for grant in grants {
        if seen.insert(&grant.permission) {
            let used = report.used.get(&grant.permission).copied().unwrap_or(0);
            println!("  {used:>8}  {}", grant.permission);
        }
    }
    let unused = if used_only {
        "unused (not checked)"
    } else {
        "UNUSED  "
    };
    for grant in &report.unused {
        println!("{unused} {} ({})", grant.permission, grant.role);
    }
    for request in &report.denied {
        println!(
            "DENIED   {} {} as {}",
            request.permission, request.uri, request.user
        );
    }
    for request in &report.denied_after_uninstall {
        println!(
            "after uninstall (not a failure): {} {} as {}, refused once its binding was deleted",
            request.permission, request.uri, request.user
        );
    }
    for request in &report.denied_while_starting {
        println!(
            "while starting (not a failure): {} {} as {} at {}, refused and allowed again within {:?} (an API server loading its RBAC caches after a restart)",
            request.permission,
            request.uri,
            request.user,
            request.time,
            audit::TRANSIENT_DENIAL
        );
    }
    for request in &report.foreign_secrets {
        println!(
            "SECRET   {} {}/{} as {}: not a Secret the operator makes",
            request.permission.verb,
            request.namespace.as_deref().unwrap_or(""),
            request.name.as_deref().unwrap_or("(all)"),
            request.user
        );
    }
    for request in &report.ungranted {
        println!(
            "UNGRANTED {} {} as {}",
            request.permission, request.uri, request.user
        );
    }
    let verdict = match (report.holds(), used_only && report.held_as_used()) {
        (true, _) => "holds",
        (false, true) => "holds for every request made (unused permissions not checked)",
        (false, false) => "FAILED",
    };
    println!("least privilege: {verdict}");
}
