//! Log output set-up.
//!
//! Logs go to stderr so that stdout stays free for commands that print
//! results (such as the planned `vcsync kubeconfig`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFilter, LogFormat};

/// The global subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter did not parse (already checked when the flag was parsed,
    /// so this means a caller built a [`LogFilter`] some other way).
    #[error("invalid log filter {filter:?}")]
    ParseFilter {
        /// The filter text.
        filter: String,
        /// The parser's complaint.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// Another global subscriber is already installed.
    #[error("failed to install the log subscriber")]
    Install {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// Installs the process-wide tracing subscriber.
///
/// # Errors
/// [`LoggingError`] when the filter is invalid or a subscriber is already set.
pub fn init(format: LogFormat, filter: &LogFilter) -> Result<(), LoggingError> {
    let env_filter = EnvFilter::builder()
        .parse(filter.as_str())
        .map_err(|source| LoggingError::ParseFilter {
            filter: filter.to_string(),
            source,
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|source| LoggingError::Install { source })
}
