//! `ruche-admin-stand-in`: answers a media node's admin API, and nothing else, for scale runs
//! of the operator (see `ruche_e2e::stand_in`). Configured by the media node's environment;
//! stops on SIGTERM or SIGINT.

use std::process::ExitCode;

use ruche_e2e::stand_in::{StandIn, StandInConfig, router};

fn main() -> ExitCode {
    let config = match StandInConfig::from_vars(|name| std::env::var(name).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ruche-admin-stand-in: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread: a thousand of these run side by side in a scale run.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ruche-admin-stand-in: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(config.bind).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "ruche-admin-stand-in: cannot listen on {}: {e}",
                    config.bind
                );
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "ruche-admin-stand-in: admin API stand-in (no media, no participants) on {}, {} slots",
            config.bind, config.capacity_slots
        );
        let app = router(StandIn::new(&config));
        match axum::serve(listener, app)
            .with_graceful_shutdown(stopped())
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ruche-admin-stand-in: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process is stopped by SIGKILL, as a pod's would be.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
