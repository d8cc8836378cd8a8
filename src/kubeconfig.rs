//! The tenant's kubeconfig: how the tenant reaches their virtual API.
//!
//! The virtual API server (k3s) writes an admin kubeconfig that vcsync itself
//! uses (`--virtual-kubeconfig`). Its server address is only right inside the
//! vcsync pod (`https://127.0.0.1:6443`), so the tenant gets a copy with the
//! address they can reach: by default the in-cluster Service in front of the
//! virtual API (`https://<api-service>.<host-namespace>.svc:443`), or an
//! external URL (`--kubeconfig-server`). The CA comes from the virtual
//! kubeconfig; the credentials too, unless a dedicated tenant-admin identity
//! is given (`--kubeconfig-credentials`, a kubeconfig whose current user holds
//! a client certificate or a token).
//!
//! Everything is inlined (file references are read and embedded) so the result
//! is self-contained, and rendered deterministically: the same inputs give the
//! same bytes, which is what lets [`ensure_kubeconfig_secret`] write only when
//! something really changed. Credentials that only work where vcsync runs
//! (exec plugins, auth providers, token files refreshed by someone else) are
//! refused rather than copied.
//!
//! `vcsync kubeconfig` prints [`build_from_files`]' result; `vcsync run` keeps
//! the Secret current with [`maintain_secret`].

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::config::{AuthInfo, Cluster, Kubeconfig, KubeconfigError};
use serde::Serialize;

use crate::markers;

/// The Secret key that holds the kubeconfig.
pub const SECRET_KEY: &str = "kubeconfig";

/// Label key marking what a vcsync-made host object is for.
pub const ROLE_LABEL: &str = "vcsync.io/role";

/// [`ROLE_LABEL`] value of the kubeconfig Secret.
pub const ROLE: &str = "kubeconfig";

/// The namespace the tenant's context points at.
const DEFAULT_NAMESPACE: &str = "default";

/// An `https://` URL of the virtual API as the tenant reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(String);

/// Why a string is not a usable server URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServerUrlError(String);

impl ServerUrl {
    /// The in-cluster address of the Service `api_service` in `host_namespace`.
    pub fn in_cluster(api_service: &str, host_namespace: &str) -> ServerUrl {
        ServerUrl(format!("https://{api_service}.{host_namespace}.svc:443"))
    }

    /// The URL as written into the kubeconfig.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServerUrl {
    type Err = ServerUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uri: http::Uri = s
            .parse()
            .map_err(|e| ServerUrlError(format!("not a URL ({e}): {s:?}")))?;
        // A kubeconfig without a CA for a plain-http server would send the
        // tenant's credentials in clear text.
        if uri.scheme_str() != Some("https") {
            return Err(ServerUrlError(format!(
                "must be an https:// URL, got {s:?}"
            )));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ServerUrlError(format!("has no host: {s:?}")));
        }
        if uri.query().is_some() {
            return Err(ServerUrlError(format!("must not have a query: {s:?}")));
        }
        Ok(ServerUrl(s.trim_end_matches('/').to_owned()))
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the tenant kubeconfig could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A kubeconfig file could not be read or parsed.
    #[error("failed to load {what} {path}", path = path.display())]
    Load {
        /// Which input (`virtual kubeconfig`, `credentials kubeconfig`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What kube found wrong.
        #[source]
        source: KubeconfigError,
    },
    /// The kubeconfig does not say which context, cluster or user to use.
    #[error("{what}: {problem}")]
    Incomplete {
        /// Which input.
        what: &'static str,
        /// What is missing.
        problem: String,
    },
    /// A file the kubeconfig refers to could not be read.
    #[error("{what}: failed to read {field} file {path}", path = path.display())]
    ReadFile {
        /// Which input.
        what: &'static str,
        /// The kubeconfig field naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Inline data is not valid base64.
    #[error("{what}: {field} is not valid base64")]
    Base64 {
        /// Which input.
        what: &'static str,
        /// The kubeconfig field.
        field: &'static str,
    },
    /// The credentials cannot be handed to someone else.
    #[error("{what}: {problem}")]
    UnsupportedCredentials {
        /// Which input.
        what: &'static str,
        /// Why.
        problem: String,
    },
    /// Rendering the YAML failed.
    #[error("failed to render the kubeconfig")]
    Render(#[source] serde_saphyr::SerializeError),
}

/// What the tenant kubeconfig is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKubeconfigSource {
    /// Tenant name: the cluster, context and (suffixed `-admin`) user name.
    pub tenant: String,
    /// Server URL written into the kubeconfig.
    pub server: ServerUrl,
    /// The virtual API's admin kubeconfig (CA, and credentials unless `credentials`).
    pub virtual_kubeconfig: PathBuf,
    /// A kubeconfig whose current user is the tenant-admin identity.
    pub credentials: Option<PathBuf>,
}

const VIRTUAL: &str = "virtual kubeconfig";
const CREDENTIALS: &str = "credentials kubeconfig";

/// Reads the inputs named in `source` and renders the tenant kubeconfig.
///
/// # Errors
/// [`BuildError`] naming the file and what is wrong with it.
pub fn build_from_files(source: &TenantKubeconfigSource) -> Result<String, BuildError> {
    let load = |what: &'static str, path: &Path| {
        Kubeconfig::read_from(path).map_err(|source| BuildError::Load {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let virtual_ = load(VIRTUAL, &source.virtual_kubeconfig)?;
    let credentials = match &source.credentials {
        Some(path) => Some((load(CREDENTIALS, path)?, CREDENTIALS)),
        None => None,
    };
    let (user_from, user_what) = match &credentials {
        Some((kc, what)) => (kc, *what),
        None => (&virtual_, VIRTUAL),
    };
    build(
        &source.tenant,
        &source.server,
        (&virtual_, VIRTUAL),
        (user_from, user_what),
    )
}

/// Renders the tenant kubeconfig: the CA of `cluster_from`'s current cluster,
/// the credentials of `user_from`'s current user, and `server`. Each input is
/// paired with its name for error messages.
///
/// # Errors
/// [`BuildError`] when an input lacks what is needed or holds credentials
/// that cannot be handed on.
pub fn build(
    tenant: &str,
    server: &ServerUrl,
    cluster_from: (&Kubeconfig, &'static str),
    user_from: (&Kubeconfig, &'static str),
) -> Result<String, BuildError> {
    let (cluster, what) = (
        current_cluster(cluster_from.0, cluster_from.1)?,
        cluster_from.1,
    );
    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(BuildError::UnsupportedCredentials {
            what,
            problem: "insecure-skip-tls-verify is set; the tenant kubeconfig needs a CA".into(),
        });
    }
    let certificate_authority_data = inline(
        what,
        "certificate-authority",
        cluster.certificate_authority_data.as_deref(),
        cluster.certificate_authority.as_deref(),
    )?;
    let user = user_credentials(current_user(user_from.0, user_from.1)?, user_from.1)?;
    let user_name = format!("{tenant}-admin");
    let out = OutKubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![OutNamedCluster {
            name: tenant,
            cluster: OutCluster {
                server: server.as_str(),
                certificate_authority_data,
            },
        }],
        contexts: vec![OutNamedContext {
            name: tenant,
            context: OutContext {
                cluster: tenant,
                user: &user_name,
                namespace: DEFAULT_NAMESPACE,
            },
        }],
        current_context: tenant,
        users: vec![OutNamedUser {
            name: &user_name,
            user,
        }],
    };
    // Plain scalars: base64 lines are long, and a folded `>-` block, while
    // valid YAML, surprises people reading or grepping the kubeconfig.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(&out, options).map_err(BuildError::Render)
}

fn incomplete(what: &'static str, problem: impl Into<String>) -> BuildError {
    BuildError::Incomplete {
        what,
        problem: problem.into(),
    }
}

fn current_context<'k>(
    kc: &'k Kubeconfig,
    what: &'static str,
) -> Result<&'k kube::config::Context, BuildError> {
    let name = match &kc.current_context {
        Some(name) if !name.is_empty() => name.as_str(),
        // Without current-context, a single context is unambiguous.
        _ if kc.contexts.len() == 1 => kc.contexts[0].name.as_str(),
        _ => return Err(incomplete(what, "no current-context")),
    };
    kc.contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| incomplete(what, format!("context {name:?} not found")))
}

fn current_cluster<'k>(kc: &'k Kubeconfig, what: &'static str) -> Result<&'k Cluster, BuildError> {
    let name = &current_context(kc, what)?.cluster;
    kc.clusters
        .iter()
        .find(|c| &c.name == name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| incomplete(what, format!("cluster {name:?} not found")))
}

fn current_user<'k>(kc: &'k Kubeconfig, what: &'static str) -> Result<&'k AuthInfo, BuildError> {
    let Some(name) = current_context(kc, what)?.user.as_ref() else {
        return Err(incomplete(what, "the current context names no user"));
    };
    kc.auth_infos
        .iter()
        .find(|u| &u.name == name)
        .and_then(|u| u.auth_info.as_ref())
        .ok_or_else(|| incomplete(what, format!("user {name:?} not found")))
}

/// Inline base64 `data`, or the base64 of the file at `path`; `None` when
/// neither is set. Inline data is decoded and re-encoded so that what the
/// Secret holds is canonical (no line breaks) and known to be valid.
fn inline(
    what: &'static str,
    field: &'static str,
    data: Option<&str>,
    path: Option<&str>,
) -> Result<Option<String>, BuildError> {
    let bytes = match (data, path) {
        (Some(data), _) if !data.is_empty() => decode_base64(data).ok_or(BuildError::Base64 {
            what,
            field: data_field(field),
        })?,
        (_, Some(path)) if !path.is_empty() => {
            std::fs::read(path).map_err(|source| BuildError::ReadFile {
                what,
                field,
                path: path.into(),
                source,
            })?
        }
        _ => return Ok(None),
    };
    Ok(Some(encode_base64(bytes)))
}

fn data_field(field: &'static str) -> &'static str {
    match field {
        "certificate-authority" => "certificate-authority-data",
        "client-certificate" => "client-certificate-data",
        "client-key" => "client-key-data",
        other => other,
    }
}

// `ByteString` (de)serializes as base64, which saves a dependency for the few
// values handled here.
fn encode_base64(bytes: Vec<u8>) -> String {
    match serde_json::to_value(ByteString(bytes)) {
        Ok(serde_json::Value::String(s)) => s,
        _ => unreachable!("ByteString serializes as a string"),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.split_whitespace().collect();
    serde_json::from_value::<ByteString>(serde_json::Value::String(compact))
        .ok()
        .map(|b| b.0)
}

/// The user's client certificate and key, or token, inlined.
fn user_credentials(user: &AuthInfo, what: &'static str) -> Result<OutUser, BuildError> {
    // kube keeps the token and key as `SecretString`s; its serializer is the
    // one public way to read them without depending on `secrecy`.
    let exposed = serde_json::to_value(user).unwrap_or_default();
    let secret = |key: &str| exposed.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let unsupported = |problem: &str| BuildError::UnsupportedCredentials {
        what,
        problem: problem.into(),
    };
    if user.exec.is_some() {
        return Err(unsupported(
            "the user authenticates with an exec plugin, which only works where it is installed",
        ));
    }
    if user.auth_provider.is_some() {
        return Err(unsupported(
            "the user authenticates with an auth provider, which cannot be handed on",
        ));
    }
    if user.impersonate.is_some() || user.impersonate_groups.is_some() {
        return Err(unsupported("the user impersonates another identity"));
    }
    let client_certificate_data = inline(
        what,
        "client-certificate",
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_deref(),
    )?;
    let key_data = secret("client-key-data");
    let client_key_data = inline(
        what,
        "client-key",
        key_data.as_deref(),
        user.client_key.as_deref(),
    )?;
    let token = match (secret("token"), &user.token_file) {
        (Some(t), _) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        (_, Some(path)) if !path.is_empty() => {
            let t = std::fs::read_to_string(path).map_err(|source| BuildError::ReadFile {
                what,
                field: "tokenFile",
                path: path.into(),
                source,
            })?;
            Some(t.trim().to_owned())
        }
        _ => None,
    };
    match (&client_certificate_data, &client_key_data, &token) {
        (Some(_), Some(_), _) | (None, None, Some(_)) => {}
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(unsupported(
                "the user has only half of a client certificate and key",
            ));
        }
        (None, None, None) => {
            return Err(unsupported(
                "the user has neither a client certificate nor a token",
            ));
        }
    }
    Ok(OutUser {
        client_certificate_data,
        client_key_data,
        token,
    })
}

// The rendered kubeconfig: a fixed field order and only what vcsync sets, so
// the output is byte-stable.

#[derive(Serialize)]
struct OutKubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<OutNamedCluster<'a>>,
    contexts: Vec<OutNamedContext<'a>>,
    #[serde(rename = "current-context")]
    current_context: &'a str,
    users: Vec<OutNamedUser<'a>>,
}

#[derive(Serialize)]
struct OutNamedCluster<'a> {
    name: &'a str,
    cluster: OutCluster<'a>,
}

#[derive(Serialize)]
struct OutCluster<'a> {
    server: &'a str,
    #[serde(
        rename = "certificate-authority-data",
        skip_serializing_if = "Option::is_none"
    )]
    certificate_authority_data: Option<String>,
}

#[derive(Serialize)]
struct OutNamedContext<'a> {
    name: &'a str,
    context: OutContext<'a>,
}

#[derive(Serialize)]
struct OutContext<'a> {
    cluster: &'a str,
    user: &'a str,
    namespace: &'a str,
}

#[derive(Serialize)]
struct OutNamedUser<'a> {
    name: &'a str,
    user: OutUser,
}

#[derive(Serialize)]
struct OutUser {
    #[serde(
        rename = "client-certificate-data",
        skip_serializing_if = "Option::is_none"
    )]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key-data", skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// What [`ensure_kubeconfig_secret`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretWrite {
    /// The Secret did not exist and was created.
    Created,
    /// The Secret existed with other content and was replaced.
    Updated,
    /// The Secret was current: nothing was written.
    Unchanged,
}

/// Why the kubeconfig Secret could not be made current.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A Secret of that name exists but vcsync did not make it (for this tenant).
    #[error(
        "host Secret {namespace}/{name} exists but is not this tenant's kubeconfig Secret \
         (label {MANAGED_BY}={tenant} missing): left untouched",
        MANAGED_BY = markers::MANAGED_BY
    )]
    Foreign {
        /// Host namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Tenant.
        tenant: String,
    },
    /// The host API refused or failed a request.
    #[error(
        "{action} host Secret {namespace}/{name}: {}",
        crate::sync::brief(source)
    )]
    Api {
        /// `reading`, `creating` or `updating`.
        action: &'static str,
        /// Host namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Labels of the kubeconfig Secret.
fn secret_labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (markers::MANAGED_BY.to_owned(), tenant.to_owned()),
        (ROLE_LABEL.to_owned(), ROLE.to_owned()),
    ])
}

/// Whether `existing` already holds exactly `kubeconfig` with vcsync's labels.
fn is_current(existing: &Secret, tenant: &str, kubeconfig: &str) -> bool {
    let labels_ok = secret_labels(tenant).iter().all(|(k, v)| {
        existing
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .is_some_and(|have| have == v)
    });
    let data_ok = existing.data.as_ref().is_some_and(|d| {
        d.len() == 1
            && d.get(SECRET_KEY)
                .is_some_and(|b| b.0 == kubeconfig.as_bytes())
    });
    labels_ok && data_ok && existing.string_data.is_none()
}

/// Makes the Secret `secret_name` in `host_ns` hold `kubeconfig` under
/// [`SECRET_KEY`], with the tenant's `managed-by` label and
/// `vcsync.io/role=kubeconfig`.
///
/// Reads first and writes only when the content differs, so calling it on
/// every resync costs one GET. A Secret of that name without this tenant's
/// `managed-by` label is never overwritten. Other labels and annotations on
/// the Secret are kept; other data keys are removed.
///
/// # Errors
/// [`SecretError::Foreign`] for a Secret vcsync does not own,
/// [`SecretError::Api`] when the host refuses (a conflict is worth a retry).
pub async fn ensure_kubeconfig_secret(
    host: &kube::Client,
    host_ns: &str,
    secret_name: &str,
    tenant: &str,
    kubeconfig: &str,
) -> Result<SecretWrite, SecretError> {
    let api: Api<Secret> = Api::namespaced(host.clone(), host_ns);
    let api_err = |action: &'static str| {
        move |source| SecretError::Api {
            action,
            namespace: host_ns.to_owned(),
            name: secret_name.to_owned(),
            source,
        }
    };
    let pp = PostParams {
        field_manager: Some(markers::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let data = BTreeMap::from([(
        SECRET_KEY.to_owned(),
        ByteString(kubeconfig.as_bytes().to_vec()),
    )]);
    let existing = api.get_opt(secret_name).await.map_err(api_err("reading"))?;
    let Some(mut existing) = existing else {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(secret_name.to_owned()),
                namespace: Some(host_ns.to_owned()),
                labels: Some(secret_labels(tenant)),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Secret::default()
        };
        api.create(&pp, &secret)
            .await
            .map_err(api_err("creating"))?;
        return Ok(SecretWrite::Created);
    };
    let owner = existing
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(markers::MANAGED_BY));
    if owner.map(String::as_str) != Some(tenant) {
        return Err(SecretError::Foreign {
            namespace: host_ns.to_owned(),
            name: secret_name.to_owned(),
            tenant: tenant.to_owned(),
        });
    }
    if is_current(&existing, tenant, kubeconfig) {
        return Ok(SecretWrite::Unchanged);
    }
    existing
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(secret_labels(tenant));
    existing.metadata.managed_fields = None;
    existing.data = Some(data);
    existing.string_data = None;
    // The resourceVersion read above rides along: a concurrent writer makes
    // this a 409 and the caller's next pass starts from fresh state.
    api.replace(secret_name, &pp, &existing)
        .await
        .map_err(api_err("updating"))?;
    Ok(SecretWrite::Updated)
}

/// Where [`maintain_secret`] writes.
#[derive(Debug, Clone)]
pub struct SecretTarget {
    /// Host namespace.
    pub namespace: String,
    /// Secret name.
    pub name: String,
}

/// How often [`maintain_secret`] rebuilds the kubeconfig from its files: the
/// virtual API server may rotate its certificates (k3s does on restart), and
/// the Secret should follow within a minute.
pub const RESYNC: Duration = Duration::from_secs(60);

/// Keeps the kubeconfig Secret current until `shutdown`: rebuilds from the
/// files every `interval` (so rotated certificates are picked up), writes only
/// when the content changed, and logs failures without giving up (the next
/// pass retries).
pub async fn maintain_secret(
    host: kube::Client,
    source: TenantKubeconfigSource,
    target: SecretTarget,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let pass = async {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let kubeconfig = match build_from_files(&source) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(
                        error = %crate::kube_clients::error_chain_line(&e),
                        "building the tenant kubeconfig failed"
                    );
                    continue;
                }
            };
            match ensure_kubeconfig_secret(
                &host,
                &target.namespace,
                &target.name,
                &source.tenant,
                &kubeconfig,
            )
            .await
            {
                Ok(SecretWrite::Unchanged) => {}
                Ok(write) => tracing::info!(
                    secret = %target.name,
                    ?write,
                    "tenant kubeconfig Secret written"
                ),
                Err(e) => tracing::warn!(
                    secret = %target.name,
                    error = %e,
                    "keeping the tenant kubeconfig Secret current failed"
                ),
            }
        }
    };
    tokio::select! {
        _ = pass => {}
        _ = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::io::Write as _;

    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

    fn b64(s: &str) -> String {
        encode_base64(s.as_bytes().to_vec())
    }

    fn admin(user: &str) -> Kubeconfig {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {ca}\n\
             contexts:\n- name: default\n  context:\n    cluster: default\n    user: default\n\
             current-context: default\nusers:\n- name: default\n  user:\n{user}",
            ca = b64(CA_PEM)
        );
        Kubeconfig::from_yaml(&yaml).unwrap()
    }

    fn cert_user() -> String {
        format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64("CERT"),
            b64("KEY")
        )
    }

    fn url() -> ServerUrl {
        ServerUrl::in_cluster("vcsync-api", "vc-tenant-a")
    }

    fn render(kc: &Kubeconfig) -> Result<String, BuildError> {
        build("tenant-a", &url(), (kc, VIRTUAL), (kc, VIRTUAL))
    }

    #[test]
    fn in_cluster_url_names_the_service() {
        assert_eq!(url().as_str(), "https://vcsync-api.vc-tenant-a.svc:443");
    }

    #[rstest]
    #[case::plain("https://api.tenant-a.example.com", "https://api.tenant-a.example.com")]
    #[case::port_and_slash("https://10.0.0.1:6443/", "https://10.0.0.1:6443")]
    #[case::path(
        "https://proxy.example.com/tenant-a",
        "https://proxy.example.com/tenant-a"
    )]
    fn server_urls_parse(#[case] input: &str, #[case] want: &str) {
        assert_eq!(input.parse::<ServerUrl>().unwrap().as_str(), want);
    }

    #[rstest]
    #[case::http("http://api.example.com", "https://")]
    #[case::no_scheme("api.example.com", "https://")]
    #[case::garbage("https://exa mple", "not a URL")]
    #[case::query("https://api.example.com/?x=1", "query")]
    fn bad_server_urls_are_refused(#[case] input: &str, #[case] reason: &str) {
        let err = input.parse::<ServerUrl>().unwrap_err();
        assert!(err.to_string().contains(reason), "{err}");
    }

    #[test]
    fn client_certificate_kubeconfig_is_rewritten_for_the_tenant() {
        let yaml = render(&admin(&cert_user())).unwrap();
        let kc = Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("tenant-a"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.server.as_deref(),
            Some("https://vcsync-api.vc-tenant-a.svc:443")
        );
        assert_eq!(
            decode_base64(cluster.certificate_authority_data.as_deref().unwrap()).unwrap(),
            CA_PEM.as_bytes()
        );
        let ctx = kc.contexts[0].context.as_ref().unwrap();
        assert_eq!(ctx.user.as_deref(), Some("tenant-a-admin"));
        assert_eq!(ctx.namespace.as_deref(), Some("default"));
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(kc.auth_infos[0].name, "tenant-a-admin");
        assert_eq!(
            decode_base64(user.client_certificate_data.as_deref().unwrap()).unwrap(),
            b"CERT"
        );
        assert!(user.token.is_none());
    }

    #[test]
    fn rendering_is_byte_stable() {
        let kc = admin(&cert_user());
        assert_eq!(render(&kc).unwrap(), render(&kc).unwrap());
    }

    #[test]
    fn files_are_inlined_and_credentials_can_come_from_another_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, CA_PEM).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tenant-token\n").unwrap();
        let virtual_path = dir.path().join("virtual.kubeconfig");
        let mut f = std::fs::File::create(&virtual_path).unwrap();
        // A relative CA path: resolved against the kubeconfig's directory.
        write!(
            f,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: ca.crt\n\
             contexts:\n- name: x\n  context:\n    cluster: c\n    user: admin\ncurrent-context: x\n\
             users:\n- name: admin\n  user:\n    token: admin-token\n"
        )
        .unwrap();
        let creds_path = dir.path().join("tenant-admin.kubeconfig");
        std::fs::write(
            &creds_path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://elsewhere\n\
                 contexts:\n- name: x\n  context:\n    cluster: c\n    user: t\ncurrent-context: x\n\
                 users:\n- name: t\n  user:\n    tokenFile: {}\n",
                token.display()
            ),
        )
        .unwrap();
        let mut source = TenantKubeconfigSource {
            tenant: "tenant-a".into(),
            server: "https://api.tenant-a.example.com".parse().unwrap(),
            virtual_kubeconfig: virtual_path,
            credentials: None,
        };
        let own = Kubeconfig::from_yaml(&build_from_files(&source).unwrap()).unwrap();
        let token = |kc: &Kubeconfig| {
            let user = serde_json::to_value(kc.auth_infos[0].auth_info.as_ref().unwrap()).unwrap();
            (
                user["token"].as_str().map(str::to_owned),
                user.get("tokenFile").cloned(),
            )
        };
        assert_eq!(token(&own), (Some("admin-token".to_owned()), None));
        let cluster = own.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.server.as_deref(),
            Some("https://api.tenant-a.example.com")
        );
        assert_eq!(
            decode_base64(cluster.certificate_authority_data.as_deref().unwrap()).unwrap(),
            CA_PEM.as_bytes()
        );

        source.credentials = Some(creds_path);
        let dedicated = Kubeconfig::from_yaml(&build_from_files(&source).unwrap()).unwrap();
        // The token is inlined, not a reference to a file only this pod has.
        assert_eq!(token(&dedicated), (Some("tenant-token".to_owned()), None));
        // The CA still comes from the virtual kubeconfig.
        assert_eq!(
            dedicated.clusters[0].cluster.as_ref().unwrap().server,
            cluster.server
        );
    }

    #[rstest]
    #[case::exec(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: get-token\n",
        "exec plugin"
    )]
    #[case::nothing("    username: admin\n", "neither a client certificate nor a token")]
    #[case::half_cert(
        "    client-certificate-data: Q0VSVA==\n",
        "half of a client certificate"
    )]
    #[case::bad_base64(
        "    client-certificate-data: '!!'\n    client-key-data: S0VZ\n",
        "not valid base64"
    )]
    #[case::impersonation("    token: t\n    as: someone\n", "impersonates")]
    fn unusable_credentials_are_refused(#[case] user: &str, #[case] reason: &str) {
        let err = render(&admin(user)).unwrap_err();
        assert!(err.to_string().contains(reason), "{err}");
    }

    #[test]
    fn insecure_skip_tls_verify_is_refused() {
        let kc = Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://x\n    insecure-skip-tls-verify: true\n\
             contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: t\n",
        )
        .unwrap();
        let err = render(&kc).unwrap_err();
        assert!(
            err.to_string().contains("insecure-skip-tls-verify"),
            "{err}"
        );
    }

    #[test]
    fn missing_context_is_named() {
        let mut kc = admin(&cert_user());
        kc.current_context = Some("nope".into());
        let err = render(&kc).unwrap_err();
        assert!(
            err.to_string().contains("context \"nope\" not found"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_input() {
        let err = build_from_files(&TenantKubeconfigSource {
            tenant: "t".into(),
            server: url(),
            virtual_kubeconfig: "/nonexistent/virtual.kubeconfig".into(),
            credentials: None,
        })
        .unwrap_err();
        let line = crate::kube_clients::error_chain_line(&err);
        assert!(
            line.starts_with("failed to load virtual kubeconfig /nonexistent/virtual.kubeconfig"),
            "{line}"
        );
    }

    fn secret(labels: &[(&str, &str)], data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[rstest]
    #[case::current(&[(markers::MANAGED_BY, "t"), (ROLE_LABEL, ROLE)], &[(SECRET_KEY, "KC")], true)]
    #[case::other_content(&[(markers::MANAGED_BY, "t"), (ROLE_LABEL, ROLE)], &[(SECRET_KEY, "old")], false)]
    #[case::extra_key(&[(markers::MANAGED_BY, "t"), (ROLE_LABEL, ROLE)], &[(SECRET_KEY, "KC"), ("x", "y")], false)]
    #[case::role_label_missing(&[(markers::MANAGED_BY, "t")], &[(SECRET_KEY, "KC")], false)]
    #[case::extra_labels_are_fine(&[(markers::MANAGED_BY, "t"), (ROLE_LABEL, ROLE), ("team", "x")], &[(SECRET_KEY, "KC")], true)]
    fn currency(
        #[case] labels: &[(&str, &str)],
        #[case] data: &[(&str, &str)],
        #[case] want: bool,
    ) {
        assert_eq!(is_current(&secret(labels, data), "t", "KC"), want);
    }
}
