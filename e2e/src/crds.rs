//! Installing the Ruche CRDs from `crds/yaml/` by server-side apply, and waiting until the API
//! server serves them.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::wait;

/// The field manager of everything the harness applies.
pub const MANAGER: &str = "ruche-e2e";

/// How long a CRD may take to become Established.
pub const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Parses a multi-document YAML file into JSON documents, skipping empty ones.
pub fn yaml_documents(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let docs = serde_saphyr::from_multiple::<Value>(&text)
        .map_err(|e| Error::Setup(format!("{} is not valid YAML: {e}", path.display())))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The CRDs of `crds/yaml/` (every `*.yaml` but the kustomization), as JSON.
pub fn crd_documents() -> Result<Vec<Value>> {
    let dir = crate::workspace().join("crds").join("yaml");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        for doc in yaml_documents(&file)? {
            if doc.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                crds.push(doc);
            }
        }
    }
    if crds.len() < 3 {
        return Err(Error::Setup(format!(
            "expected the 3 Ruche CRDs in {}, found {}",
            dir.display(),
            crds.len()
        )));
    }
    Ok(crds)
}

/// Installs (or brings up to date) the CRDs by server-side apply, once per test process, and
/// waits until each is Established.
pub async fn install(client: &Client) -> Result<()> {
    INSTALLED
        .get_or_try_init(|| async {
            let api: Api<CustomResourceDefinition> = Api::all(client.clone());
            let mut names = Vec::new();
            for crd in crd_documents()? {
                let name = crd
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::Setup("a CRD in crds/yaml has no name".into()))?
                    .to_string();
                api.patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&crd),
                )
                .await
                .map_err(|e| Error::Setup(format!("applying CRD {name}: {e}")))?;
                names.push(name);
            }
            for name in names {
                let api = api.clone();
                wait::until(
                    &format!("CRD {name} to be Established"),
                    ESTABLISH_TIMEOUT,
                    || {
                        let (api, name) = (api.clone(), name.clone());
                        async move {
                            let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                            let conditions =
                                crd.status.and_then(|s| s.conditions).unwrap_or_default();
                            let established = conditions
                                .iter()
                                .any(|c| c.type_ == "Established" && c.status == "True");
                            if established {
                                Ok(())
                            } else {
                                Err(format!("conditions {conditions:?}"))
                            }
                        }
                    },
                )
                .await?;
            }
            eprintln!("e2e: Ruche CRDs installed (server-side apply) and Established");
            Ok::<(), Error>(())
        })
        .await?;
    Ok(())
}
