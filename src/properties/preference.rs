//! The five preference levels (RFC 9622 §6.2).

use serde::{Deserialize, Serialize};
use std::fmt;

/// How much the application wants a property (RFC 9622 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Preference {
    /// Select only stacks that provide the property; fail otherwise.
    Require,
    /// Rank stacks that provide it first.
    Prefer,
    /// No preference (the RFC's "No Preference"; the 2018 draft's "Ignore").
    NoPreference,
    /// Rank stacks that avoid it first.
    Avoid,
    /// Select only stacks that can run without it; fail otherwise.
    Prohibit,
}

impl Preference {
    /// Parse `require`, `prefer`, `noPreference` (or `ignore`), `avoid`, `prohibit`, any case.
    pub fn parse(s: &str) -> Result<Preference, crate::Error> {
        match super::norm(s).as_str() {
            "require" => Ok(Preference::Require),
            "prefer" => Ok(Preference::Prefer),
            "nopreference" | "ignore" | "none" => Ok(Preference::NoPreference),
            "avoid" => Ok(Preference::Avoid),
            "prohibit" => Ok(Preference::Prohibit),
            _ => Err(crate::Error::invalid_configuration(format!(
                "unknown preference `{s}`; use require, prefer, noPreference, avoid or prohibit"
            ))),
        }
    }
}

impl fmt::Display for Preference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preference::Require => "Require",
            Preference::Prefer => "Prefer",
            Preference::NoPreference => "NoPreference",
            Preference::Avoid => "Avoid",
            Preference::Prohibit => "Prohibit",
        })
    }
}

impl std::str::FromStr for Preference {
    type Err = crate::Error;

    /// The same as [`Preference::parse`], so `"...".parse::<Preference>()` works.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preference::parse(s)
    }
}
