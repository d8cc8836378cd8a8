//! Just enough of Kubernetes' `resource.Quantity` to compare and add cpu/memory amounts.
//!
//! The scheduler fit check and the QoS class both compare quantities semantically (`1` equals
//! `1000m`, `1Gi` equals `1073741824`), so strings cannot be compared directly.

/// Parses a quantity string into thousandths of its unit (millicores for cpu, millibytes for
/// memory), rounding up like `Quantity.MilliValue()` does. `None` means malformed or too large.
pub fn parse_milli(input: &str) -> Option<i128> {
    let s = input.trim();
    if s.is_empty() {
        return None;
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = digits.parse().ok()?;
    // The value is mantissa * 10^(-scale) * multiplier, and we want it times 1000.
    let scale = i32::try_from(frac_part.len()).ok()?;
    let (binary_shift, decimal_exp) = suffix_factor(suffix)?;
    let mut numerator = mantissa.checked_mul(1i128.checked_shl(binary_shift)?)?;
    let mut exp = decimal_exp + 3 - scale;
    if exp >= 0 {
        numerator = numerator.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?;
        exp = 0;
    }
    let value = if exp < 0 {
        let divisor = 10i128.checked_pow(u32::try_from(-exp).ok()?)?;
        // Round away from zero so a tiny request still counts, as the Go code does.
        (numerator + divisor - 1) / divisor
    } else {
        numerator
    };
    Some(if negative { -value } else { value })
}

/// Returns (power of two, power of ten) for a quantity suffix.
fn suffix_factor(suffix: &str) -> Option<(u32, i32)> {
    let factor = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        other => {
            let rest = other.strip_prefix(['e', 'E'])?;
            let exp: i32 = rest.parse().ok()?;
            if !(-30..=30).contains(&exp) {
                return None;
            }
            (0, exp)
        }
    };
    Some(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("1", Some(1000))]
    #[case("1000m", Some(1000))]
    #[case("250m", Some(250))]
    #[case("0.5", Some(500))]
    #[case(".5", Some(500))]
    #[case("1.5k", Some(1_500_000))]
    #[case("1Ki", Some(1_024_000))]
    #[case("1Gi", Some(1_073_741_824_000))]
    #[case("128974848", Some(128_974_848_000))]
    #[case("129e6", Some(129_000_000_000))]
    #[case("123Mi", Some(128_974_848_000))]
    #[case("1n", Some(1))]
    #[case("-2", Some(-2000))]
    #[case("0", Some(0))]
    #[case("", None)]
    #[case("abc", None)]
    #[case("1.2.3", None)]
    #[case("5X", None)]
    fn parses(#[case] input: &str, #[case] want: Option<i128>) {
        assert_eq!(parse_milli(input), want);
    }
}
