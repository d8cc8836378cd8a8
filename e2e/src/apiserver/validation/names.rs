//! Reusable value validators with apimachinery's exact messages
//! (`k8s.io/apimachinery/pkg/util/validation` and the name functions of `api/validation`).
//!
//! The `is_*` functions return the list of problems as strings, like their Go counterparts; the
//! caller wraps each into a `field.Invalid` for its path.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use regex::Regex;

use super::invalid_str;
use crate::apiserver::errors::FieldError;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const WILDCARD_ERR: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character";
const QNAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QNAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const ENV_VAR_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_ERR: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const HTTP_HEADER_FMT: &str = "[-A-Za-z0-9]+";
const HTTP_HEADER_ERR: &str = "a valid HTTP header must consist of alphanumeric characters or '-'";
const C_IDENT_FMT: &str = "[A-Za-z_][A-Za-z0-9_]*";

/// A DNS-1123 label's maximum length.
pub const DNS1123_LABEL_MAX: usize = 63;
/// A DNS-1123 subdomain's maximum length.
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn anchored(fmt: &str) -> Regex {
    Regex::new(&format!("^(?:{fmt})$")).expect("static regex")
}

fn subdomain_fmt() -> String {
    format!("{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*")
}

static DNS1123_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL_FMT));
static DNS1123_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| anchored(&subdomain_fmt()));
static DNS1035_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1035_LABEL_FMT));
static WILDCARD_RE: LazyLock<Regex> =
    LazyLock::new(|| anchored(&format!("\\*\\.{}", subdomain_fmt())));
static QNAME_RE: LazyLock<Regex> = LazyLock::new(|| anchored(QNAME_FMT));
static LABEL_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| anchored(&format!("({QNAME_FMT})?")));
static CONFIG_KEY_RE: LazyLock<Regex> = LazyLock::new(|| anchored(CONFIG_KEY_FMT));
static ENV_VAR_RE: LazyLock<Regex> = LazyLock::new(|| anchored(ENV_VAR_FMT));
static HTTP_HEADER_RE: LazyLock<Regex> = LazyLock::new(|| anchored(HTTP_HEADER_FMT));
static C_IDENT_RE: LazyLock<Regex> = LazyLock::new(|| anchored(C_IDENT_FMT));
static PORT_NAME_CHARSET_RE: LazyLock<Regex> = LazyLock::new(|| anchored("[-a-z0-9]+"));

/// `validation.MaxLenError`.
pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `validation.RegexError`: the message, examples and the regex used.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

/// `validation.EmptyError`.
pub fn empty_error() -> String {
    "must be non-empty".into()
}

/// `validation.InclusiveRangeError`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// `IsDNS1123Label`.
pub fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !DNS1123_LABEL_RE.is_match(v) {
        if DNS1123_SUBDOMAIN_RE.is_match(v) {
            // A valid subdomain that is not a label can only be one with dots.
            errs.push("must not contain dots".into());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// `IsDNS1123Subdomain`.
pub fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !DNS1123_SUBDOMAIN_RE.is_match(v) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            &subdomain_fmt(),
            &["example.com"],
        ));
    }
    errs
}

/// `IsDNS1035Label`.
pub fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !DNS1035_LABEL_RE.is_match(v) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// `IsWildcardDNS1123Subdomain`.
pub fn is_wildcard_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !WILDCARD_RE.is_match(v) {
        errs.push(regex_error(
            WILDCARD_ERR,
            &format!("\\*\\.{}", subdomain_fmt()),
            &["*.example.com"],
        ));
    }
    errs
}

/// `IsQualifiedName` (a label key): optional DNS-subdomain prefix, `/`, and a name part.
pub fn is_qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QNAME_ERR, QNAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !QNAME_RE.is_match(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QNAME_ERR, QNAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// `IsValidLabelValue`.
pub fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !LABEL_VALUE_RE.is_match(v) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            &format!("({QNAME_FMT})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn has_chdir_prefix(v: &str) -> Vec<String> {
    if v == "." {
        vec!["must not be '.'".into()]
    } else if v == ".." {
        vec!["must not be '..'".into()]
    } else if v.starts_with("..") {
        vec!["must not start with '..'".into()]
    } else {
        Vec::new()
    }
}

/// `IsConfigMapKey` (also used for secret keys).
pub fn is_config_map_key(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !CONFIG_KEY_RE.is_match(v) {
        errs.push(regex_error(
            CONFIG_KEY_ERR,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(has_chdir_prefix(v));
    errs
}

/// `IsEnvVarName`.
pub fn is_env_var_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if !ENV_VAR_RE.is_match(v) {
        errs.push(regex_error(
            ENV_VAR_ERR,
            ENV_VAR_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errs.extend(has_chdir_prefix(v));
    errs
}

/// `IsHTTPHeaderName`.
pub fn is_http_header_name(v: &str) -> Vec<String> {
    if HTTP_HEADER_RE.is_match(v) {
        Vec::new()
    } else {
        vec![regex_error(
            HTTP_HEADER_ERR,
            HTTP_HEADER_FMT,
            &["X-Header-Name"],
        )]
    }
}

/// `IsCIdentifier`.
pub fn is_c_identifier(v: &str) -> Vec<String> {
    if C_IDENT_RE.is_match(v) {
        Vec::new()
    } else {
        vec![regex_error(
            "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'",
            C_IDENT_FMT,
            &["my_name", "MY_NAME", "MyName"],
        )]
    }
}

/// `IsValidPortNum`.
pub fn is_valid_port_num(p: i64) -> Vec<String> {
    if (1..=65535).contains(&p) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// `IsInRange`.
pub fn is_in_range(v: i64, lo: i64, hi: i64) -> Vec<String> {
    if v >= lo && v <= hi {
        Vec::new()
    } else {
        vec![inclusive_range_error(lo, hi)]
    }
}

/// `IsValidUserID` / `IsValidGroupID` (both uint32).
pub fn is_valid_unix_id(id: i64) -> Vec<String> {
    if (0..=0xffff_ffff).contains(&id) {
        Vec::new()
    } else {
        vec![inclusive_range_error(0, 0xffff_ffff)]
    }
}

/// `IsValidPortName` (IANA service name).
pub fn is_valid_port_name(p: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if p.len() > 15 {
        errs.push(max_len_error(15));
    }
    if !PORT_NAME_CHARSET_RE.is_match(p) {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !p.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if p.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if p.starts_with('-') || p.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Go's `netutils.ParseIPSloppy`: like the standard parser but IPv4 octets may carry leading
/// zeros.
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        octets[i] = p.parse::<u16>().ok().filter(|n| *n <= 255)? as u8;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// `ParseCIDRSloppy` succeeded: `ip/prefix` with a prefix no longer than the address.
pub fn parse_cidr_sloppy(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip = parse_ip_sloppy(ip)?;
    if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

/// `validation.IsValidIP(fldPath, value)`.
pub fn is_valid_ip(field: &str, v: &str) -> Vec<FieldError> {
    if parse_ip_sloppy(v).is_some() {
        Vec::new()
    } else {
        vec![invalid_str(
            field,
            v,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )]
    }
}

/// `validation.IsValidIPv4Address`.
pub fn is_valid_ipv4(field: &str, v: &str) -> Vec<FieldError> {
    match parse_ip_sloppy(v) {
        Some(IpAddr::V4(_)) => Vec::new(),
        _ => vec![invalid_str(field, v, "must be a valid IPv4 address")],
    }
}

/// `validation.IsValidIPv6Address`.
pub fn is_valid_ipv6(field: &str, v: &str) -> Vec<FieldError> {
    match parse_ip_sloppy(v) {
        Some(IpAddr::V6(_)) => Vec::new(),
        _ => vec![invalid_str(field, v, "must be a valid IPv6 address")],
    }
}

/// `validation.IsValidCIDR(fldPath, value)`.
pub fn is_valid_cidr(field: &str, v: &str) -> Vec<FieldError> {
    if parse_cidr_sloppy(v).is_some() {
        Vec::new()
    } else {
        vec![invalid_str(
            field,
            v,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )]
    }
}

/// A name-validation function: `(name, prefix) -> problems`, as `ValidateNameFunc`.
pub type NameFn = fn(&str, bool) -> Vec<String>;

/// A generateName prefix may end in `-`: the random suffix makes it valid. Go replaces the last
/// *two* bytes by `a` (`name[:len(name)-2] + "a"`); kept as is since it decides which names pass.
fn mask_trailing_dash(name: &str, prefix: bool) -> String {
    if prefix && name.len() > 1 && name.ends_with('-') {
        format!(
            "{}a",
            String::from_utf8_lossy(&name.as_bytes()[..name.len() - 2])
        )
    } else {
        name.to_string()
    }
}

/// `NameIsDNSSubdomain`.
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_subdomain(&mask_trailing_dash(name, prefix))
}

/// `NameIsDNSLabel`.
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_label(&mask_trailing_dash(name, prefix))
}

/// `NameIsDNS1035Label`.
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    is_dns1035_label(&mask_trailing_dash(name, prefix))
}

/// `ValidateNamespaceName`: a DNS-1123 label.
pub fn validate_namespace_name(name: &str, prefix: bool) -> Vec<String> {
    name_is_dns_label(name, prefix)
}

/// `path.ValidatePathSegmentName`: what the URL path needs of a name.
pub fn validate_path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for bad in [".", ".."] {
            if name == bad {
                return vec![format!("may not be '{bad}'")];
            }
        }
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("abc", 0)]
    #[case("a.b", 1)]
    #[case("Bad_Name", 1)]
    #[case(&"a".repeat(64), 1)]
    fn dns_label(#[case] v: &str, #[case] n: usize) {
        assert_eq!(
            is_dns1123_label(v).len(),
            n,
            "{v}: {:?}",
            is_dns1123_label(v)
        );
    }

    #[test]
    fn label_with_dots_says_dots() {
        assert_eq!(
            is_dns1123_label("a.b"),
            vec!["must not contain dots".to_string()]
        );
    }

    #[test]
    fn exact_messages() {
        assert_eq!(
            is_dns1123_label("Bad_Name")[0],
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(
            is_dns1123_subdomain("CM_Upper")[0],
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(
            is_config_map_key("bad key!")[0],
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        );
        assert_eq!(
            is_valid_label_value("not valid!")[0],
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
    }

    #[rstest]
    #[case("app", vec![])]
    #[case("example.com/app", vec![])]
    #[case("/app", vec!["prefix part must be non-empty"])]
    #[case("example.com/", vec!["name part must be non-empty", "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"])]
    fn qualified_names(#[case] v: &str, #[case] want: Vec<&str>) {
        assert_eq!(is_qualified_name(v), want);
    }

    #[rstest]
    #[case("http", 0)]
    #[case("80", 1)]
    #[case("-ab", 1)]
    #[case("a--b", 1)]
    #[case("averyveryverylongname", 1)]
    fn port_names(#[case] v: &str, #[case] n: usize) {
        assert_eq!(is_valid_port_name(v).len(), n);
    }

    #[rstest]
    #[case("10.0.0.1", true)]
    #[case("010.000.0.1", true)]
    #[case("10.0.0", false)]
    #[case("::1", true)]
    #[case("not-an-ip", false)]
    fn ips(#[case] v: &str, #[case] ok: bool) {
        assert_eq!(parse_ip_sloppy(v).is_some(), ok);
    }

    #[rstest]
    #[case("10.0.0.0/8", true)]
    #[case("10.0.0.0/99", false)]
    #[case("2001:db8::/64", true)]
    #[case("10.0.0.0", false)]
    fn cidrs(#[case] v: &str, #[case] ok: bool) {
        assert_eq!(parse_cidr_sloppy(v).is_some(), ok);
    }

    #[test]
    fn generate_name_prefix_may_end_in_dash() {
        assert!(name_is_dns_subdomain("web-", true).is_empty());
        assert!(!name_is_dns_subdomain("web-", false).is_empty());
        assert!(!name_is_dns_subdomain("Bad_", true).is_empty());
    }

    #[test]
    fn path_segments() {
        assert_eq!(
            validate_path_segment_name("..", false),
            vec!["may not be '..'".to_string()]
        );
        assert_eq!(
            validate_path_segment_name("a/b%", false),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }
}
