//! `resource.Quantity` as far as admission and quota need it: parsing the suffixed forms
//! (`100m`, `1Gi`, `2k`, `1e3`), exact arithmetic and apimachinery's canonical printing (the
//! strings quota status and error messages show).

use std::cmp::Ordering;
use std::fmt;

/// How a quantity prints (apimachinery's `Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A quantity held exactly in units of 10^-9.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    pub format: Format,
}

const NANO: i128 = 1_000_000_000;

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Quantity {
    /// Zero, printed as `0`.
    pub fn zero() -> Quantity {
        Quantity {
            nanos: 0,
            format: Format::DecimalSI,
        }
    }

    /// An integer count (`pods: 3`).
    pub fn count(n: i64) -> Quantity {
        Quantity {
            nanos: i128::from(n) * NANO,
            format: Format::DecimalSI,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Parse `[+-]digits[.digits][suffix]`; `None` when it is not a quantity.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let (neg, body) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, suffix) = body.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        // value = digits * 10^(-frac_len), kept as (mantissa, exp10).
        let digits = format!("{int_part}{frac_part}");
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let mut exp10: i32 = -(frac_part.len() as i32);
        let mut mul: i128 = 1;
        let format = match suffix {
            "" => Format::DecimalSI,
            "n" => {
                exp10 -= 9;
                Format::DecimalSI
            }
            "u" => {
                exp10 -= 6;
                Format::DecimalSI
            }
            "m" => {
                exp10 -= 3;
                Format::DecimalSI
            }
            "k" => {
                exp10 += 3;
                Format::DecimalSI
            }
            "M" => {
                exp10 += 6;
                Format::DecimalSI
            }
            "G" => {
                exp10 += 9;
                Format::DecimalSI
            }
            "T" => {
                exp10 += 12;
                Format::DecimalSI
            }
            "P" => {
                exp10 += 15;
                Format::DecimalSI
            }
            "E" => {
                exp10 += 18;
                Format::DecimalSI
            }
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                let p = match suffix {
                    "Ki" => 1,
                    "Mi" => 2,
                    "Gi" => 3,
                    "Ti" => 4,
                    "Pi" => 5,
                    _ => 6,
                };
                mul = 1024i128.pow(p);
                Format::BinarySI
            }
            _ => {
                let e = suffix
                    .strip_prefix('e')
                    .or_else(|| suffix.strip_prefix('E'))?;
                let e: i32 = e.parse().ok()?;
                exp10 += e;
                Format::DecimalExponent
            }
        };
        // To nanos: mantissa * mul * 10^(exp10 + 9), rounding up fractions of a nano as Go does.
        let shift = exp10 + 9;
        let base = mantissa.checked_mul(mul)?;
        let nanos = if shift >= 0 {
            base.checked_mul(10i128.checked_pow(shift as u32)?)?
        } else {
            let div = 10i128.checked_pow((-shift) as u32)?;
            let q = base / div;
            if base % div != 0 { q + 1 } else { q }
        };
        Some(Quantity {
            nanos: if neg { -nanos } else { nanos },
            format,
        })
    }

    /// `self + other`; a zero receiver takes the other's format (Go's `Quantity.Add`).
    pub fn add(&self, other: &Quantity) -> Quantity {
        let format = if self.nanos == 0 {
            other.format
        } else {
            self.format
        };
        Quantity {
            nanos: self.nanos + other.nanos,
            format,
        }
    }

    /// `self - other`, keeping the receiver's format.
    pub fn sub(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos - other.nanos,
            format: self.format,
        }
    }

    /// Canonical string (`Quantity.String()`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let neg = self.nanos < 0;
        let abs = self.nanos.abs();
        let sign = if neg { "-" } else { "" };
        if self.format == Format::BinarySI && abs >= 1024 * NANO && abs % NANO == 0 {
            let mut v = abs / NANO;
            let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut i = 0;
            while i < 6 && v % 1024 == 0 {
                v /= 1024;
                i += 1;
            }
            return format!("{sign}{v}{}", suffixes[i]);
        }
        // Decimal: strip factors of ten, then step the exponent down to a multiple of three.
        let mut m = abs;
        let mut exp: i32 = -9;
        while m % 10 == 0 {
            m /= 10;
            exp += 1;
        }
        let r = exp.rem_euclid(3);
        m *= 10i128.pow(r as u32);
        exp -= r;
        if self.format == Format::DecimalExponent {
            return if exp == 0 {
                format!("{sign}{m}")
            } else {
                format!("{sign}{m}e{exp}")
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => {
                // Beyond exa: print with trailing zeros rather than an exponent.
                let extra = (exp - 18) as u32;
                return format!("{sign}{}E", m * 10i128.pow(extra));
            }
        };
        format!("{sign}{m}{suffix}")
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("100m", "100m")]
    #[case("1000m", "1")]
    #[case("1500m", "1500m")]
    #[case("0.5", "500m")]
    #[case("2000", "2k")]
    #[case("1Gi", "1Gi")]
    #[case("1024Mi", "1Gi")]
    #[case("1536Mi", "1536Mi")]
    #[case("100Mi", "100Mi")]
    #[case("512", "512")]
    #[case("0", "0")]
    #[case("1e3", "1e3")]
    #[case("10", "10")]
    fn canonical_forms(#[case] input: &str, #[case] want: &str) {
        assert_eq!(Quantity::parse(input).unwrap().canonical(), want);
    }

    #[rstest]
    #[case("600m", "600m", "1200m")]
    #[case("0", "100Mi", "100Mi")]
    #[case("100Mi", "100Mi", "200Mi")]
    #[case("500m", "500m", "1")]
    #[case("1", "1", "2")]
    fn sums(#[case] a: &str, #[case] b: &str, #[case] want: &str) {
        let s = Quantity::parse(a)
            .unwrap()
            .add(&Quantity::parse(b).unwrap());
        assert_eq!(s.canonical(), want);
    }

    #[rstest]
    #[case("1200m", "1", Ordering::Greater)]
    #[case("1Gi", "1073741824", Ordering::Equal)]
    #[case("1G", "1Gi", Ordering::Less)]
    fn comparisons(#[case] a: &str, #[case] b: &str, #[case] want: Ordering) {
        assert_eq!(
            Quantity::parse(a)
                .unwrap()
                .cmp(&Quantity::parse(b).unwrap()),
            want
        );
    }

    #[rstest]
    #[case("")]
    #[case("abc")]
    #[case("1Xi")]
    #[case("1..2")]
    fn rejects_garbage(#[case] input: &str) {
        assert!(Quantity::parse(input).is_none());
    }
}
