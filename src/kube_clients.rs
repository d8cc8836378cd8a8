//! Clients for the two API servers vcsync talks to.
//!
//! vcsync reads the tenant's objects from the *virtual* API and writes their
//! mirrors into one namespace of the *host* API. Almost every start-up problem
//! is one of these two connections being wrong, so every error here names
//! which API failed, the file or URL involved, and a short diagnosis
//! ([`Problem`]) ahead of the library's own detail.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::version::Info;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use crate::config::{Config, HostApiSource};

/// Which of the two API servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// The real cluster that runs the tenant's workloads.
    Host,
    /// The tenant's own API server.
    Virtual,
}

impl Api {
    /// The command line flag that points at this API's kubeconfig.
    pub fn kubeconfig_flag(self) -> &'static str {
        match self {
            Api::Host => "--host-kubeconfig",
            Api::Virtual => "--virtual-kubeconfig",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::Host => "host",
            Api::Virtual => "virtual",
        })
    }
}

/// Failure to build the client of one API.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientsError {
    /// The kubeconfig file could not be read (missing, unreadable).
    #[error("failed to read {api} kubeconfig {path} ({flag})", path = path.display(), flag = api.kubeconfig_flag())]
    ReadKubeconfig {
        /// Which API.
        api: Api,
        /// The kubeconfig path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig file was read but is not a usable kubeconfig.
    #[error("failed to load {api} kubeconfig {path} ({flag})", path = path.display(), flag = api.kubeconfig_flag())]
    LoadKubeconfig {
        /// Which API.
        api: Api,
        /// The kubeconfig path as given.
        path: PathBuf,
        /// What kube found wrong with it.
        #[source]
        source: KubeconfigError,
    },
    /// No host kubeconfig was given and the in-cluster configuration is unusable.
    #[error(
        "failed to load in-cluster config for the host API \
         (no --host-kubeconfig given and not running in a pod?)"
    )]
    LoadInClusterConfig {
        /// What kube found missing.
        #[source]
        source: kube::config::InClusterError,
    },
    /// The client could not be built from an otherwise valid configuration
    /// (bad TLS material, for example).
    #[error("failed to build {api} API client for {url}")]
    BuildClient {
        /// Which API.
        api: Api,
        /// The API server URL.
        url: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// A short diagnosis of why an API server did not answer the version probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Nothing listens at the address.
    ConnectionRefused,
    /// The server did not answer in time.
    Timeout,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed (untrusted certificate, wrong name, not TLS).
    Tls,
    /// HTTP 401: the credentials were rejected.
    Unauthorized,
    /// HTTP 403: the credentials lack permission.
    Forbidden,
    /// Another HTTP error status.
    HttpStatus(u16),
    /// The server answered, but not with a version document.
    BadResponse,
    /// Anything else; the detail says what.
    Other,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::ConnectionRefused => f.write_str("connection refused"),
            Problem::Timeout => f.write_str("timed out"),
            Problem::Dns => f.write_str("host name lookup failed"),
            Problem::Tls => f.write_str("TLS handshake failed"),
            Problem::Unauthorized => f.write_str("unauthorized (HTTP 401): credentials rejected"),
            Problem::Forbidden => f.write_str("forbidden (HTTP 403): credentials lack permission"),
            Problem::HttpStatus(code) => write!(f, "HTTP {code}"),
            Problem::BadResponse => f.write_str("unexpected response"),
            Problem::Other => f.write_str("request failed"),
        }
    }
}

/// One API server that did not answer the version probe.
#[derive(Debug, thiserror::Error)]
#[error("{api} API at {url} is not reachable: {problem}: {detail}")]
pub struct Unreachable {
    /// Which API.
    pub api: Api,
    /// The API server URL.
    pub url: String,
    /// The diagnosis.
    pub problem: Problem,
    /// The underlying error chain as one line. Kept as text rather than as a
    /// `source` so that reporting both APIs' failures in one
    /// [`CheckReachableError`] loses no detail.
    pub detail: String,
}

/// At least one API server did not answer the version probe.
#[derive(Debug, thiserror::Error)]
#[error("{}", failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct CheckReachableError {
    /// Every failed API, virtual first.
    pub failures: Vec<Unreachable>,
}

/// The version each API server reported.
#[derive(Debug, Clone)]
pub struct ApiVersions {
    /// The host API server's version.
    pub host: Info,
    /// The virtual API server's version.
    pub virtual_: Info,
}

/// One API's client and where it points.
#[derive(Clone)]
pub struct ApiClient {
    /// Which API.
    pub api: Api,
    /// The API server URL, for messages.
    pub url: String,
    /// The client.
    pub client: kube::Client,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("api", &self.api)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The clients of both API servers.
#[derive(Debug, Clone)]
pub struct KubeClients {
    /// The host cluster.
    pub host: ApiClient,
    /// The tenant's virtual API.
    pub virtual_: ApiClient,
}

/// Reads and resolves the kubeconfig at `path` for `api`.
///
/// # Errors
/// [`KubeClientsError::ReadKubeconfig`] when the file cannot be read,
/// [`KubeClientsError::LoadKubeconfig`] when it is not a usable kubeconfig.
pub async fn load_kubeconfig(api: Api, path: &Path) -> Result<kube::Config, KubeClientsError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| match source {
        KubeconfigError::ReadConfig(source, _) => KubeClientsError::ReadKubeconfig {
            api,
            path: path.to_owned(),
            source,
        },
        source => KubeClientsError::LoadKubeconfig {
            api,
            path: path.to_owned(),
            source,
        },
    })?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| KubeClientsError::LoadKubeconfig {
            api,
            path: path.to_owned(),
            source,
        })
}

/// Builds a client for `api` from a loaded configuration.
///
/// `timeout` bounds connecting, so that a black-holed address fails fast.
///
/// # Errors
/// [`KubeClientsError::BuildClient`] when the TLS material is unusable.
pub fn build_client(
    api: Api,
    mut config: kube::Config,
    timeout: Duration,
) -> Result<ApiClient, KubeClientsError> {
    let url = config.cluster_url.to_string();
    // Only connecting is bounded: a read timeout would also cut the long,
    // often quiet watch streams the sync engine will hold. The start-up
    // probe bounds its whole request itself.
    config.connect_timeout = Some(timeout);
    let client =
        kube::Client::try_from(config).map_err(|source| KubeClientsError::BuildClient {
            api,
            url: url.clone(),
            source,
        })?;
    Ok(ApiClient { api, url, client })
}

impl KubeClients {
    /// Loads both configurations and builds both clients, virtual first
    /// (it is the one flag that is always required).
    ///
    /// Must be called within a tokio runtime, and after a rustls
    /// `CryptoProvider` has been installed.
    ///
    /// # Errors
    /// The first [`KubeClientsError`] met.
    pub async fn from_config(config: &Config) -> Result<Self, KubeClientsError> {
        let virtual_config = load_kubeconfig(Api::Virtual, &config.virtual_kubeconfig).await?;
        let host_config = match &config.host_api {
            HostApiSource::Kubeconfig(path) => load_kubeconfig(Api::Host, path).await?,
            HostApiSource::InCluster => kube::Config::incluster()
                .map_err(|source| KubeClientsError::LoadInClusterConfig { source })?,
        };
        Ok(Self {
            virtual_: build_client(Api::Virtual, virtual_config, config.api_timeout)?,
            host: build_client(Api::Host, host_config, config.api_timeout)?,
        })
    }

    /// Asks both API servers for their version, concurrently, and reports
    /// every one that fails.
    ///
    /// # Errors
    /// [`CheckReachableError`] listing each API that did not answer within
    /// `timeout`, with the reason.
    pub async fn check_reachable(
        &self,
        timeout: Duration,
    ) -> Result<ApiVersions, CheckReachableError> {
        let (virtual_, host) = tokio::join!(
            probe_version(&self.virtual_, timeout),
            probe_version(&self.host, timeout)
        );
        match (virtual_, host) {
            (Ok(virtual_), Ok(host)) => Ok(ApiVersions { host, virtual_ }),
            (virtual_, host) => Err(CheckReachableError {
                failures: [virtual_.err(), host.err()].into_iter().flatten().collect(),
            }),
        }
    }
}

/// Asks one API server for `/version`.
///
/// # Errors
/// [`Unreachable`] with a diagnosis.
pub async fn probe_version(api: &ApiClient, timeout: Duration) -> Result<Info, Unreachable> {
    match tokio::time::timeout(timeout, api.client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(err)) => Err(Unreachable {
            api: api.api,
            url: api.url.clone(),
            problem: diagnose(&err),
            detail: describe(&err),
        }),
        Err(_elapsed) => Err(Unreachable {
            api: api.api,
            url: api.url.clone(),
            problem: Problem::Timeout,
            detail: format!(
                "no answer to GET /version within {}s",
                timeout.as_secs_f64()
            ),
        }),
    }
}

/// Classifies a failed request by walking its error chain.
///
/// `std::io::Error::source` skips the error it wraps, so wrapped errors are
/// also reached through `get_ref`, where hyper and rustls put the real cause.
pub fn diagnose(err: &kube::Error) -> Problem {
    match err {
        kube::Error::Api(status) => {
            // kube keeps the body's `code`; a body that is JSON but not a
            // full Status leaves it 0, so the reason is the fallback.
            return match (status.code, status.reason.as_str()) {
                (401, _) | (0, "Unauthorized") => Problem::Unauthorized,
                (403, _) | (0, "Forbidden") => Problem::Forbidden,
                (code, _) => Problem::HttpStatus(code),
            };
        }
        kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) => return Problem::BadResponse,
        _ => {}
    }
    let mut stack: Vec<&(dyn StdError + 'static)> = vec![err];
    let mut text = String::new();
    while let Some(e) = stack.pop() {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Problem::Tls;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Problem::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return Problem::Timeout,
                _ => {}
            }
            if let Some(inner) = io.get_ref() {
                stack.push(inner);
            }
        }
        text.push_str(&e.to_string().to_lowercase());
        text.push('\n');
        if let Some(next) = e.source() {
            stack.push(next);
        }
    }
    // Last resort: some layers only keep the cause as text.
    if text.contains("dns error") || text.contains("failed to lookup address") {
        Problem::Dns
    } else if text.contains("timed out") || text.contains("deadline has elapsed") {
        Problem::Timeout
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        Problem::Tls
    } else {
        Problem::Other
    }
}

/// The detail of a failed request: for an error answer, the server's own
/// message and reason rather than kube's debug dump of the `Status`.
fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            // A proxy in front of the API server may answer with a whole
            // HTML page; keep the line short and on one line.
            let message = truncate(&collapse_whitespace(&status.message), 200);
            let parts: Vec<&str> = [message.as_str(), status.reason.trim()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            if parts.is_empty() {
                "the response body was empty".to_owned()
            } else {
                parts.join(": ")
            }
        }
        err => error_chain_line(err),
    }
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Formats an error and its sources on one line, `outer: inner: root`.
///
/// Many library errors already print their source inside their own message;
/// a source whose text is already part of the line so far is skipped so the
/// line does not repeat itself.
pub fn error_chain_line(err: &(dyn StdError + 'static)) -> String {
    let mut line = collapse_whitespace(&err.to_string());
    let mut next = err.source();
    while let Some(e) = next {
        let text = collapse_whitespace(&e.to_string());
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    fn install_crypto() {
        // Already installed by another test in this process is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    fn kubeconfig_file(server: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(
            file,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n\
             current-context: ctx\nusers:\n- name: u\n  user:\n    token: t\n"
        )
        .unwrap();
        file
    }

    /// Serves `response` (a full HTTP/1.1 response) to every connection,
    /// until the test ends.
    async fn canned_server(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        format!("http://{addr}")
    }

    async fn client_for(api: Api, server: &str) -> ApiClient {
        install_crypto();
        let file = kubeconfig_file(server);
        let config = load_kubeconfig(api, file.path()).await.unwrap();
        build_client(api, config, Duration::from_secs(5)).unwrap()
    }

    const VERSION_OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        Content-Length: 206\r\nConnection: close\r\n\r\n\
        {\"major\":\"1\",\"minor\":\"32\",\"gitVersion\":\"v1.32.3\",\"gitCommit\":\"0\",\
        \"gitTreeState\":\"clean\",\"buildDate\":\"2025-03-11T00:00:00Z\",\"goVersion\":\"go1.23\",\
        \"compiler\":\"gc\",\"platform\":\"linux/amd64\",\"emulationMajor\":\"1\"}";

    /// What a real kube-apiserver answers to a bad token.
    const UNAUTHORIZED: &str = "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
        Content-Length: 128\r\nConnection: close\r\n\r\n\
        {\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
        \"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}";

    /// A proxy's HTML error page, multi-line and long.
    const PROXY_404: &str = "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\
        Content-Length: 357\r\nConnection: close\r\n\r\n\
        <html>\n<head><title>404</title></head>\n<body>\n\
        xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\
        xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\
        xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\
        </body>\n</html>\n";

    #[rstest::rstest]
    #[case::proxy_404(PROXY_404)]
    #[case::version(VERSION_OK)]
    #[case::unauthorized(UNAUTHORIZED)]
    fn canned_responses_have_correct_content_length(#[case] response: &str) {
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        assert!(response.contains(&format!("Content-Length: {}\r\n", body.len())));
    }

    #[tokio::test]
    async fn missing_kubeconfig_names_api_flag_and_path() {
        let err = load_kubeconfig(Api::Virtual, Path::new("/nonexistent/v.kubeconfig"))
            .await
            .unwrap_err();
        assert!(matches!(err, KubeClientsError::ReadKubeconfig { .. }));
        let line = error_chain_line(&err);
        assert!(
            line.starts_with(
                "failed to read virtual kubeconfig /nonexistent/v.kubeconfig (--virtual-kubeconfig): "
            ),
            "{line}"
        );
        assert!(line.contains("No such file"), "{line}");
    }

    #[tokio::test]
    async fn malformed_kubeconfig_is_a_load_error() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "clusters: [this is: not, valid").unwrap();
        let err = load_kubeconfig(Api::Host, file.path()).await.unwrap_err();
        assert!(matches!(
            err,
            KubeClientsError::LoadKubeconfig { api: Api::Host, .. }
        ));
        assert!(error_chain_line(&err).starts_with("failed to load host kubeconfig"));
    }

    #[tokio::test]
    async fn kubeconfig_without_server_is_a_load_error() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(
            file,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{}}\n\
             contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n\
             current-context: ctx\nusers:\n- name: u\n  user: {{}}\n"
        )
        .unwrap();
        let err = load_kubeconfig(Api::Virtual, file.path())
            .await
            .unwrap_err();
        let line = error_chain_line(&err);
        assert!(line.contains("cluster url is missing"), "{line}");
    }

    #[tokio::test]
    async fn closed_port_is_connection_refused() {
        let client = client_for(Api::Virtual, "https://127.0.0.1:1").await;
        let err = probe_version(&client, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.problem, Problem::ConnectionRefused, "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "virtual API at https://127.0.0.1:1/ is not reachable: connection refused: "
            ),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn answers_are_diagnosed() {
        let cases: [(&'static str, Problem); 5] = [
            (UNAUTHORIZED, Problem::Unauthorized),
            (
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
                Problem::Forbidden,
            ),
            (
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                Problem::HttpStatus(500),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
                Problem::BadResponse,
            ),
            (PROXY_404, Problem::HttpStatus(404)),
        ];
        for (response, expected) in cases {
            let url = canned_server(response).await;
            let client = client_for(Api::Host, &url).await;
            let err = probe_version(&client, Duration::from_secs(5))
                .await
                .unwrap_err();
            assert_eq!(err.problem, expected, "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
            assert!(err.to_string().len() < 400, "{err}");
            assert!(
                err.to_string().starts_with(&format!("host API at {url}/")),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn plain_http_server_behind_https_url_is_a_tls_failure() {
        let url = canned_server(VERSION_OK)
            .await
            .replace("http://", "https://");
        let client = client_for(Api::Virtual, &url).await;
        let err = probe_version(&client, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.problem, Problem::Tls, "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        // Accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let client = client_for(Api::Virtual, &url).await;
        let err = probe_version(&client, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err.problem, Problem::Timeout, "{err}");
        drop(listener);
    }

    #[tokio::test]
    async fn check_reachable_reports_every_failed_api() {
        let ok = canned_server(VERSION_OK).await;
        let clients = KubeClients {
            host: client_for(Api::Host, &ok).await,
            virtual_: client_for(Api::Virtual, "http://127.0.0.1:1").await,
        };
        let err = clients
            .check_reachable(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.failures.len(), 1);
        assert_eq!(err.failures[0].api, Api::Virtual);

        let both_down = KubeClients {
            host: client_for(Api::Host, "http://127.0.0.1:1").await,
            virtual_: client_for(Api::Virtual, "http://127.0.0.1:1").await,
        };
        let err = both_down
            .check_reachable(Duration::from_secs(5))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("virtual API at "), "{msg}");
        assert!(msg.contains("; host API at "), "{msg}");
    }

    #[tokio::test]
    async fn check_reachable_returns_both_versions() {
        let ok = canned_server(VERSION_OK).await;
        let clients = KubeClients {
            host: client_for(Api::Host, &ok).await,
            virtual_: client_for(Api::Virtual, &ok).await,
        };
        let versions = clients
            .check_reachable(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(versions.host.git_version, "v1.32.3");
        assert_eq!(versions.virtual_.git_version, "v1.32.3");
    }

    #[test]
    fn error_chain_line_skips_repeated_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Repeats(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("top")]
        struct Top(#[source] Repeats);

        let err = Top(Repeats(std::io::Error::other("root cause")));
        assert_eq!(error_chain_line(&err), "top: outer: root cause");
    }
}
