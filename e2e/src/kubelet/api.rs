//! Small helpers around API calls: field managers, error classification and bounded retries.

use std::future::Future;

use k8s_openapi::api::core::v1::Event;
use kube::api::PostParams;
use tracing::debug;

use super::config::RetryPolicy;

/// Field managers, so managedFields read like a real cluster's.
pub(crate) const KUBELET: &str = "kubelet";
pub(crate) const SCHEDULER: &str = "kube-scheduler";

pub(crate) fn post_params(manager: &str) -> PostParams {
    PostParams {
        field_manager: Some(manager.to_owned()),
        ..Default::default()
    }
}

pub(crate) fn event_manager(event: &Event) -> &'static str {
    if event.reporting_component.as_deref() == Some("default-scheduler") {
        SCHEDULER
    } else {
        KUBELET
    }
}

pub(crate) fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Server overload and transport failures are worth another try; request errors are not.
pub(crate) fn retryable(e: &kube::Error) -> bool {
    match api_code(e) {
        Some(code) => code == 429 || code >= 500,
        None => !matches!(
            e,
            kube::Error::SerdeError(_) | kube::Error::BuildRequest(_) | kube::Error::HttpError(_)
        ),
    }
}

/// Runs `op` up to `policy.attempts` times with exponential backoff on retryable errors.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    mut op: F,
) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let mut delay = policy.initial;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < policy.attempts.max(1) && retryable(&e) => {
                debug!(%what, attempt, error = %e, "retrying api call");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(policy.max);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::time::Duration;

    fn status_err(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        }))
    }

    #[rstest]
    #[case(500, true)]
    #[case(503, true)]
    #[case(429, true)]
    #[case(409, false)]
    #[case(404, false)]
    #[case(422, false)]
    fn retry_classification(#[case] code: u16, #[case] want: bool) {
        assert_eq!(retryable(&status_err(code)), want);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let policy = RetryPolicy {
            attempts: 3,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let mut calls = 0;
        let result: kube::Result<()> = with_retries(policy, "test", || {
            calls += 1;
            async { Err(status_err(503)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 3);
        let mut calls = 0;
        let result: kube::Result<()> = with_retries(policy, "test", || {
            calls += 1;
            async { Err(status_err(404)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
