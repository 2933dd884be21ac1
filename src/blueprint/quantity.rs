//! Quantities a blueprint writes as short strings: byte sizes (`512Mi`, `2Gi`), CPU cores
//! (`1.5`, `500m`) and durations (`30s`, `1h30m`, `250ms`).
//!
//! Each type parses from a YAML string or number, keeps what the user wrote for display and
//! diffs, and exposes the value in the unit the runtime needs. Parsing is pure and total:
//! bad input returns a message that says what a good value looks like.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written `512Mi`, `2Gi`, `1G`, `100k` or a plain integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// A CPU allowance in thousandths of a core (`1.5` is 1500, `250m` is 250).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpu(pub u64);

/// A duration written with units: `30s`, `5m`, `1h30m`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dur(pub Duration);

const BYTE_HELP: &str = "write a size such as 512Mi, 2Gi or 1G (or a plain number of bytes)";
const CPU_HELP: &str = "write cores as a number such as 1.5 or as millicores such as 500m";
const DUR_HELP: &str = "write a duration with a unit, such as 30s, 5m, 1h30m or 250ms";

/// Why a quantity does not parse; each message says what a good value looks like. The field is
/// the value as written (trimmed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty size: {BYTE_HELP}")]
    EmptySize,
    #[error("size `{0}` is negative: {BYTE_HELP}")]
    NegativeSize(String),
    #[error("unknown size unit `{unit}` in `{size}`: {BYTE_HELP}")]
    UnknownSizeUnit { unit: String, size: String },
    #[error("`{0}` is not a size: {BYTE_HELP}")]
    NotASize(String),
    #[error("size `{0}` is too large")]
    SizeTooLarge(String),
    #[error("size `{0}` is not a whole number of bytes")]
    FractionalBytes(String),
    #[error("cpu `{0}` is negative: {CPU_HELP}")]
    NegativeCpu(String),
    #[error("`{0}` is not a CPU amount: {CPU_HELP}")]
    NotACpu(String),
    #[error("cpu `{0}` is out of range")]
    CpuOutOfRange(String),
    #[error("cpu `{0}` is finer than a millicore: {CPU_HELP}")]
    FinerThanMillicore(String),
    #[error("cpu `{0}` is zero: give at least 1m (a thousandth of a core)")]
    ZeroCpu(String),
    #[error("duration `{0}` is negative: {DUR_HELP}")]
    NegativeDuration(String),
    #[error("duration `{0}` has no unit: {DUR_HELP}")]
    NoUnit(String),
    #[error("`{0}` is not a duration: {DUR_HELP}")]
    NotADuration(String),
}

impl ByteSize {
    /// Parses `512Mi`, `2Gi`, `1G`, `100k`, `4096`.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(QuantityError::EmptySize);
        }
        if t.starts_with('-') {
            return Err(QuantityError::NegativeSize(t.into()));
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "k" | "K" | "kB" | "KB" => 1_000,
            "M" | "MB" => 1_000_000,
            "G" | "GB" => 1_000_000_000,
            "T" | "TB" => 1_000_000_000_000,
            "Ki" | "KiB" => 1 << 10,
            "Mi" | "MiB" => 1 << 20,
            "Gi" | "GiB" => 1 << 30,
            "Ti" | "TiB" => 1 << 40,
            other => {
                return Err(QuantityError::UnknownSizeUnit {
                    unit: other.into(),
                    size: t.into(),
                })
            }
        };
        let value: f64 = num.parse().map_err(|_| QuantityError::NotASize(t.into()))?;
        let bytes = value * mult as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(QuantityError::SizeTooLarge(t.into()));
        }
        if num.contains('.') && bytes.fract() != 0.0 {
            return Err(QuantityError::FractionalBytes(t.into()));
        }
        #[allow(
            clippy::cast_possible_truncation,
            reason = "bytes is finite, >= 0 (only digits and dots reach the parse) and <= 2^64 \
                      (checked above), and whole (a fraction was refused above); only 2^64 \
                      itself is out of range, and `as` saturates it to u64::MAX as it always has"
        )]
        let whole = bytes as u64;
        Ok(ByteSize(whole))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl Cpu {
    /// Parses `1.5`, `2`, `500m`.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let t = s.trim();
        if t.starts_with('-') {
            return Err(QuantityError::NegativeCpu(t.into()));
        }
        let not_a_cpu = || QuantityError::NotACpu(t.into());
        let millis = if let Some(m) = t.strip_suffix('m') {
            m.parse::<u64>().map_err(|_| not_a_cpu())?
        } else {
            let cores: f64 = t.parse().map_err(|_| not_a_cpu())?;
            if !cores.is_finite() || cores > 100_000.0 {
                return Err(QuantityError::CpuOutOfRange(t.into()));
            }
            let m = cores * 1000.0;
            if (m - m.round()).abs() > 1e-6 {
                return Err(QuantityError::FinerThanMillicore(t.into()));
            }
            #[allow(
                clippy::cast_possible_truncation,
                reason = "m is finite and 0..=1e8 (cores checked above), a whole number once \
                          rounded: it fits a u64 exactly"
            )]
            let millis = m.round() as u64;
            millis
        };
        if millis == 0 {
            return Err(QuantityError::ZeroCpu(t.into()));
        }
        Ok(Cpu(millis))
    }

    pub fn millicores(self) -> u64 {
        self.0
    }
}

impl Dur {
    /// Parses `30s`, `1h30m`, `250ms`. A bare number is refused: the unit is never guessed.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let t = s.trim();
        if t.starts_with('-') {
            return Err(QuantityError::NegativeDuration(t.into()));
        }
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
            return Err(QuantityError::NoUnit(t.into()));
        }
        humantime::parse_duration(t)
            .map(Dur)
            .map_err(|_| QuantityError::NotADuration(t.into()))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1000 == 0 {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Serde glue: each quantity accepts a string or a number and serialises to its canonical string.
macro_rules! quantity_serde {
    ($ty:ident, $name:literal, $expecting:literal, $pattern:literal, $allow_num:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::parse(v).map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        $ty::parse(&v.to_string()).map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        $ty::parse(&v.to_string()).map_err(E::custom)
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        $ty::parse(&v.to_string()).map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                if $allow_num {
                    json_schema!({
                        "description": $expecting,
                        "anyOf": [
                            {"type": "string", "pattern": $pattern},
                            {"type": "number", "exclusiveMinimum": 0}
                        ]
                    })
                } else {
                    json_schema!({"description": $expecting, "type": "string", "pattern": $pattern})
                }
            }
        }
    };
}

quantity_serde!(
    ByteSize,
    "ByteSize",
    "a size such as 512Mi, 2Gi or 1G",
    r"^[0-9]+(\.[0-9]+)?\s*(B|k|K|kB|KB|M|MB|G|GB|T|TB|Ki|KiB|Mi|MiB|Gi|GiB|Ti|TiB)?$",
    true
);
quantity_serde!(
    Cpu,
    "Cpu",
    "CPU cores such as 1.5, or millicores such as 500m",
    r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$",
    true
);
quantity_serde!(
    Dur,
    "Duration",
    "a duration such as 30s, 5m, 1h30m or 250ms",
    r"^([0-9]+\s*(ns|us|ms|s|sec|m|min|h|hr|d|days?)\s*)+$",
    false
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("512Mi").unwrap().bytes(), 512 << 20);
        assert_eq!(ByteSize::parse("2Gi").unwrap().bytes(), 2 << 30);
        assert_eq!(ByteSize::parse("1G").unwrap().bytes(), 1_000_000_000);
        assert_eq!(ByteSize::parse("4096").unwrap().bytes(), 4096);
        assert_eq!(ByteSize::parse("1.5Gi").unwrap().bytes(), 3 << 29);
        assert!(ByteSize::parse("-1Gi")
            .unwrap_err()
            .to_string()
            .contains("negative"));
        assert!(ByteSize::parse("2Gb")
            .unwrap_err()
            .to_string()
            .contains("unknown size unit"));
        assert!(ByteSize::parse("lots").is_err());
        assert!(ByteSize::parse("").is_err());
        assert!(ByteSize::parse("1.5")
            .unwrap_err()
            .to_string()
            .contains("whole number"));
        assert_eq!(ByteSize(512 << 20).to_string(), "512Mi");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn cpus() {
        assert_eq!(Cpu::parse("1.5").unwrap().millicores(), 1500);
        assert_eq!(Cpu::parse("500m").unwrap().millicores(), 500);
        assert_eq!(Cpu::parse("2").unwrap().millicores(), 2000);
        assert!(Cpu::parse("0").unwrap_err().to_string().contains("zero"));
        assert!(Cpu::parse("-1")
            .unwrap_err()
            .to_string()
            .contains("negative"));
        assert!(Cpu::parse("0.0001")
            .unwrap_err()
            .to_string()
            .contains("millicore"));
        assert_eq!(Cpu(1500).to_string(), "1500m");
        assert_eq!(Cpu(2000).to_string(), "2");
    }

    #[test]
    fn durations() {
        assert_eq!(
            Dur::parse("30s").unwrap().as_duration(),
            Duration::from_secs(30)
        );
        assert_eq!(
            Dur::parse("1h30m").unwrap().as_duration(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            Dur::parse("250ms").unwrap().as_duration(),
            Duration::from_millis(250)
        );
        assert!(Dur::parse("30")
            .unwrap_err()
            .to_string()
            .contains("no unit"));
        assert!(Dur::parse("soon").is_err());
        assert!(Dur::parse("-5s")
            .unwrap_err()
            .to_string()
            .contains("negative"));
    }

    #[test]
    fn errors_are_typed_and_keep_the_value_as_written() {
        assert_eq!(
            ByteSize::parse(" 2Gb "),
            Err(QuantityError::UnknownSizeUnit {
                unit: "Gb".into(),
                size: "2Gb".into()
            })
        );
        assert_eq!(ByteSize::parse(""), Err(QuantityError::EmptySize));
        assert_eq!(
            Cpu::parse("lots"),
            Err(QuantityError::NotACpu("lots".into()))
        );
        assert_eq!(Cpu::parse("0m"), Err(QuantityError::ZeroCpu("0m".into())));
        assert_eq!(Dur::parse("30"), Err(QuantityError::NoUnit("30".into())));
        assert_eq!(
            Dur::parse("soon").unwrap_err().to_string(),
            format!("`soon` is not a duration: {DUR_HELP}")
        );
    }

    #[test]
    fn serde_reports_the_typed_error_as_its_message() {
        let e = serde_json::from_str::<Cpu>("\"-1\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&QuantityError::NegativeCpu("-1".into()).to_string()),
            "{e}"
        );
    }
}
