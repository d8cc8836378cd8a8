//! Validated Kubernetes object names.
//!
//! vcsync derives host-side object names from the tenant name and writes into
//! the host namespace, so a name that the API server would reject must be
//! refused when the flags are parsed, not minutes later on the first write.
//! The newtypes here can only be built through their validating constructors,
//! which makes an invalid name unrepresentable past the command line.

use std::fmt;
use std::str::FromStr;

/// The longest RFC 1123 label Kubernetes accepts (`validation.DNS1123LabelMaxLength`).
pub const DNS1123_LABEL_MAX_LEN: usize = 63;

/// The longest RFC 1123 subdomain Kubernetes accepts (`validation.DNS1123SubdomainMaxLength`).
pub const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;

/// Why a string is not a valid Kubernetes name.
///
/// The messages follow the wording of Kubernetes' own
/// `k8s.io/apimachinery/pkg/util/validation`, so an operator sees the same
/// explanation from vcsync as from `kubectl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than the kind of name allows.
    #[error("must be no more than {max} characters (got {len})")]
    TooLong {
        /// The length limit.
        max: usize,
        /// The actual length in bytes.
        len: usize,
    },
    /// The name has a character or shape that is not allowed for a label.
    #[error(
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
         and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', \
         regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )]
    InvalidLabel,
    /// The name has a character or shape that is not allowed for a subdomain.
    #[error(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
         or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
         regex used for validation is \
         '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )]
    InvalidSubdomain,
}

/// Checks the shape of one label, ignoring its length.
fn is_label_shape(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// A lowercase RFC 1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63
/// characters): what Kubernetes requires of namespace names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsLabel(String);

impl DnsLabel {
    /// Validates `name` and wraps it.
    ///
    /// # Errors
    /// Returns [`NameError`] when `name` is empty, longer than 63 characters or
    /// not of the label shape.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > DNS1123_LABEL_MAX_LEN {
            return Err(NameError::TooLong {
                max: DNS1123_LABEL_MAX_LEN,
                len: name.len(),
            });
        }
        if !is_label_shape(&name) {
            return Err(NameError::InvalidLabel);
        }
        Ok(Self(name))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DnsLabel {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for DnsLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DnsLabel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A lowercase RFC 1123 subdomain (dot-separated labels, at most 253
/// characters): what Kubernetes requires of most object names, service
/// accounts among them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsSubdomain(String);

impl DnsSubdomain {
    /// Validates `name` and wraps it.
    ///
    /// # Errors
    /// Returns [`NameError`] when `name` is empty, longer than 253 characters
    /// or not of the subdomain shape.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > DNS1123_SUBDOMAIN_MAX_LEN {
            return Err(NameError::TooLong {
                max: DNS1123_SUBDOMAIN_MAX_LEN,
                len: name.len(),
            });
        }
        // Kubernetes checks the subdomain regex only, not a per-label length.
        if !name.split('.').all(is_label_shape) {
            return Err(NameError::InvalidSubdomain);
        }
        Ok(Self(name))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DnsSubdomain {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for DnsSubdomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DnsSubdomain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::simple("tenant-a")]
    #[case::single_char("a")]
    #[case::digits("123-abc")]
    #[case::starts_with_digit("0abc")]
    #[case::max_len(&"a".repeat(63))]
    fn valid_labels(#[case] name: &str) {
        assert_eq!(DnsLabel::new(name).unwrap().as_str(), name);
    }

    #[rstest]
    #[case::empty("", NameError::Empty)]
    #[case::too_long(&"a".repeat(64), NameError::TooLong { max: 63, len: 64 })]
    #[case::uppercase("Tenant", NameError::InvalidLabel)]
    #[case::underscore("my_tenant", NameError::InvalidLabel)]
    #[case::dot("a.b", NameError::InvalidLabel)]
    #[case::leading_dash("-a", NameError::InvalidLabel)]
    #[case::trailing_dash("a-", NameError::InvalidLabel)]
    #[case::space("a b", NameError::InvalidLabel)]
    #[case::non_ascii("tenänt", NameError::InvalidLabel)]
    fn invalid_labels(#[case] name: &str, #[case] expected: NameError) {
        assert_eq!(DnsLabel::new(name), Err(expected));
    }

    #[rstest]
    #[case::label("vcsync-workload")]
    #[case::dotted("a.b.c")]
    #[case::max_len(&"a".repeat(253))]
    fn valid_subdomains(#[case] name: &str) {
        assert_eq!(DnsSubdomain::new(name).unwrap().as_str(), name);
    }

    #[rstest]
    #[case::empty("", NameError::Empty)]
    #[case::too_long(&"a".repeat(254), NameError::TooLong { max: 253, len: 254 })]
    #[case::empty_label("a..b", NameError::InvalidSubdomain)]
    #[case::leading_dot(".a", NameError::InvalidSubdomain)]
    #[case::trailing_dot("a.", NameError::InvalidSubdomain)]
    #[case::dash_before_dot("a-.b", NameError::InvalidSubdomain)]
    #[case::uppercase("A.b", NameError::InvalidSubdomain)]
    fn invalid_subdomains(#[case] name: &str, #[case] expected: NameError) {
        assert_eq!(DnsSubdomain::new(name), Err(expected));
    }

    #[test]
    fn from_str_and_display_round_trip() {
        let label: DnsLabel = "tenant-a".parse().unwrap();
        assert_eq!(label.to_string(), "tenant-a");
        let sub: DnsSubdomain = "a.b".parse().unwrap();
        assert_eq!(sub.to_string(), "a.b");
    }
}
