//! `kubectl ruche`: a kubectl plugin for Ruche's fleets (install `kubectl-ruche` on `PATH`).
//! It follows kubectl's conventions: `--kubeconfig`, `--context`, `-n`, `-o wide|json|yaml`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use ruche_crds::{DrainMode, MediaFleet, MediaNode, Room};
use ruche_operator::build::labels;
use ruche_operator::build::secrets::random_text;
use ruche_operator::join_token::{self, Admission, TokenArgs};
use ruche_operator::plugin::{edit, explain, render, rotate};
use serde::Serialize;

/// Ruche's fleets from kubectl: status, explain, drain, undrain, evacuate, token, rotate-key, top.
#[derive(Parser, Debug)]
#[command(name = "kubectl-ruche", bin_name = "kubectl ruche", version)]
struct Cli {
    /// The kubeconfig file (default: `KUBECONFIG`, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current one).
    #[arg(long, global = true)]
    context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Output: more columns (`wide`), or the objects as `json` or `yaml`.
    #[arg(short = 'o', long, global = true, value_enum)]
    output: Option<Output>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Wide,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A fleet at a glance (every fleet of the namespace without a name): nodes, slots, zones.
    Status {
        /// The fleet.
        fleet: Option<String>,
    },
    /// Where a room is and why, or why it waits (asked of the core that places rooms).
    Explain {
        /// What to explain (`room`).
        kind: ExplainKind,
        /// Its name.
        name: String,
    },
    /// Drain a media node: no new room, live rooms move (or wait) by the deadline.
    Drain {
        /// The MediaNode.
        node: String,
        /// How long its live rooms may stay (`30m`, `2h`, `1h30m`).
        #[arg(long, default_value = "30m")]
        deadline: String,
        /// At the deadline: `Migrate` the rooms live, or `Wait` for them to end.
        #[arg(long, default_value = "Migrate", value_parser = ["Migrate", "Wait"])]
        mode: String,
    },
    /// Put a drained media node back in service.
    Undrain {
        /// The MediaNode.
        node: String,
    },
    /// Evacuate a zone of a fleet (every node drains), or end it with `--undo`.
    Evacuate {
        /// The MediaFleet.
        fleet: String,
        /// The zone.
        zone: String,
        /// End the evacuation.
        #[arg(long)]
        undo: bool,
    },
    /// Mint a join token for a room with its fleet's key (read from the cluster).
    Token {
        #[command(flatten)]
        token: TokenArgs,
        /// The fleet (default: the room's).
        #[arg(long)]
        fleet: Option<String>,
    },
    /// Rotate a fleet's join token key: a new key signs, the old one still admits until
    /// `--finish` (run it once the tokens minted before the rotation have expired).
    RotateKey {
        /// The MediaFleet.
        fleet: String,
        /// The new key: an HMAC secret or an Ed25519 PEM key (default: a fresh HMAC secret).
        #[arg(long, conflicts_with = "finish")]
        key_file: Option<PathBuf>,
        /// End the rotation: the previous key admits no more.
        #[arg(long)]
        finish: bool,
    },
    /// Media nodes or rooms by load.
    Top {
        /// `nodes` or `rooms`.
        what: TopKind,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExplainKind {
    Room,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TopKind {
    Nodes,
    Rooms,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn client(cli: &Cli) -> Result<(Client, String, String), String> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| format!("no cluster to talk to: {e}"))?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| format!("no cluster to talk to: {e}"))?;
    Ok((client, namespace, server))
}

fn objects<T: Serialize>(items: &[T], output: Option<Output>) -> Result<Option<String>, String> {
    match output {
        Some(Output::Json) => serde_json::to_string_pretty(items)
            .map(|s| Some(s + "\n"))
            .map_err(|e| e.to_string()),
        Some(Output::Yaml) => serde_saphyr::to_string(&items)
            .map(Some)
            .map_err(|e| e.to_string()),
        _ => Ok(None),
    }
}

/// What every command needs: the client, the namespace, the output.
struct Session {
    client: Client,
    ns: String,
    output: Option<Output>,
    /// The API server's address, for errors.
    server: String,
}

impl Session {
    /// An API error in words, naming the object, or the server that could not be reached.
    fn failed(&self, kind: &str, name: &str, e: &kube::Error) -> String {
        let namespace = &self.ns;
        match e {
            kube::Error::Api(s) if s.code == 404 => {
                format!("{kind} {name} not found in namespace {namespace}")
            }
            kube::Error::Api(s) if s.code == 403 => {
                format!(
                    "not allowed on {kind} {name} in namespace {namespace}: {}",
                    s.message
                )
            }
            kube::Error::Api(_) => format!("{kind} {name} in namespace {namespace}: {e}"),
            e => self.unreachable(e),
        }
    }

    /// A transport error: the API server did not answer.
    fn unreachable(&self, e: &kube::Error) -> String {
        format!(
            "cannot reach the API server at {} ({e}): is the cluster up, and are --kubeconfig \
             and --context the right ones?",
            self.server
        )
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn wide(&self) -> bool {
        self.output == Some(Output::Wide)
    }

    async fn list<K>(&self, kind: &str) -> Result<Vec<K>, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| match e {
                kube::Error::Api(_) => format!("cannot list {kind} in namespace {}: {e}", self.ns),
                e => self.unreachable(&e),
            })
    }

    async fn status(&self, fleet: Option<&String>) -> Result<String, String> {
        let list = match fleet {
            Some(name) => vec![
                self.api::<MediaFleet>()
                    .get(name)
                    .await
                    .map_err(|e| self.failed("MediaFleet", name, &e))?,
            ],
            None => self.list::<MediaFleet>("MediaFleets").await?,
        };
        Ok(objects(&list, self.output)?.unwrap_or_else(|| render::status(&list, self.wide())))
    }

    async fn explain(&self, name: &str) -> Result<String, String> {
        let room = self
            .api::<Room>()
            .get(name)
            .await
            .map_err(|e| self.failed("Room", name, &e))?;
        let fleet = self
            .api::<MediaFleet>()
            .get_opt(&room.spec.fleet)
            .await
            .map_err(|e| self.failed("MediaFleet", &room.spec.fleet, &e))?;
        let nodes = self.list::<MediaNode>("MediaNodes").await?;
        let rooms = self.list::<Room>("Rooms").await?;
        Ok(explain::explain(
            &room,
            fleet.as_ref(),
            &nodes,
            &rooms,
            jiff::Timestamp::now(),
        ))
    }

    async fn drain(&self, node: &str, deadline: &str, mode: &str) -> Result<String, String> {
        let within = edit::deadline(deadline).map_err(|e| e.to_string())?;
        let mode = if mode == "Wait" {
            DrainMode::Wait
        } else {
            DrainMode::Migrate
        };
        let patch = edit::drain(jiff::Timestamp::now(), within, mode);
        self.api::<MediaNode>()
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.failed("MediaNode", node, &e))?;
        let then = if mode == DrainMode::Wait {
            "stay until they end"
        } else {
            "move live"
        };
        Ok(format!(
            "medianode/{node} draining: no new room; live rooms {then} after {deadline}\n"
        ))
    }

    async fn undrain(&self, node: &str) -> Result<String, String> {
        self.api::<MediaNode>()
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(&edit::undrain()),
            )
            .await
            .map_err(|e| self.failed("MediaNode", node, &e))?;
        Ok(format!("medianode/{node} back in service\n"))
    }

    async fn evacuate(&self, fleet: &str, zone: &str, undo: bool) -> Result<String, String> {
        let api = self.api::<MediaFleet>();
        let current = api
            .get(fleet)
            .await
            .map_err(|e| self.failed("MediaFleet", fleet, &e))?;
        let ops = edit::evacuate(&current, zone, !undo).map_err(|e| e.to_string())?;
        let patch: json_patch::Patch = serde_json::from_value(ops).map_err(|e| e.to_string())?;
        api.patch(fleet, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(|e| self.failed("MediaFleet", fleet, &e))?;
        Ok(if undo {
            format!("mediafleet/{fleet}: zone {zone} serves again\n")
        } else {
            format!(
                "mediafleet/{fleet}: zone {zone} evacuating: its nodes drain, rooms move to the other zones they allow\n"
            )
        })
    }

    async fn token(
        &self,
        room: &str,
        fleet: Option<&String>,
        admission: Admission,
    ) -> Result<String, String> {
        let fleet = match fleet {
            Some(f) => f.clone(),
            None => {
                self.api::<Room>()
                    .get(room)
                    .await
                    .map_err(|e| self.failed("Room", room, &e))?
                    .spec
                    .fleet
            }
        };
        let key = join_token::fleet_key(self.client.clone(), &self.ns, &fleet).await?;
        Ok(join_token::mint(&key, &admission)? + "\n")
    }

    async fn rotate_key(
        &self,
        fleet: &str,
        key_file: Option<&PathBuf>,
        finish: bool,
    ) -> Result<String, String> {
        let name = labels::join_key_secret(fleet);
        let api = self.api::<Secret>();
        let secret = api
            .get(&name)
            .await
            .map_err(|e| self.failed("Secret", &name, &e))?;
        let ops = if finish {
            rotate::finish(&secret)
        } else {
            let new_key = match key_file {
                Some(path) => std::fs::read(path)
                    .map_err(|e| format!("--key-file {}: {e}", path.display()))?,
                None => random_text(64)
                    .map_err(|e| format!("no randomness for a new key: {e}"))?
                    .into_bytes(),
            };
            rotate::start(&secret, &new_key)
        }
        .map_err(|e| e.to_string())?;
        let patch: json_patch::Patch = serde_json::from_value(ops).map_err(|e| e.to_string())?;
        api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(|e| self.failed("Secret", &name, &e))?;
        Ok(if finish {
            format!("secret/{name}: rotation finished: only the current key admits\n")
        } else {
            format!(
                "secret/{name}: rotation started: the new key signs, and media nodes admit tokens of either key within about a minute.\n\
                 Apps must mint with the new key now. Once the tokens minted before now have expired:\n  \
                 kubectl ruche rotate-key {fleet} --finish\n"
            )
        })
    }

    async fn top(&self, what: TopKind) -> Result<String, String> {
        match what {
            TopKind::Nodes => {
                let list = self.list::<MediaNode>("MediaNodes").await?;
                Ok(objects(&list, self.output)?
                    .unwrap_or_else(|| render::top_nodes(&list, self.wide())))
            }
            TopKind::Rooms => {
                let list = self.list::<Room>("Rooms").await?;
                Ok(objects(&list, self.output)?
                    .unwrap_or_else(|| render::top_rooms(&list, self.wide())))
            }
        }
    }
}

async fn run(cli: Cli) -> Result<String, String> {
    // A bad argument is said before any cluster is reached.
    if let Command::Drain { deadline, .. } = &cli.command {
        edit::deadline(deadline).map_err(|e| e.to_string())?;
    }
    let (client, ns, server) = client(&cli).await?;
    let session = Session {
        client,
        ns,
        output: cli.output,
        server,
    };
    match &cli.command {
        Command::Status { fleet } => session.status(fleet.as_ref()).await,
        Command::Explain {
            kind: ExplainKind::Room,
            name,
        } => session.explain(name).await,
        Command::Drain {
            node,
            deadline,
            mode,
        } => session.drain(node, deadline, mode).await,
        Command::Undrain { node } => session.undrain(node).await,
        Command::Evacuate { fleet, zone, undo } => session.evacuate(fleet, zone, *undo).await,
        Command::Token { token, fleet } => {
            session
                .token(&token.room, fleet.as_ref(), token.admission())
                .await
        }
        Command::RotateKey {
            fleet,
            key_file,
            finish,
        } => session.rotate_key(fleet, key_file.as_ref(), *finish).await,
        Command::Top { what } => session.top(*what).await,
    }
}
