//! Transport, connection and message properties (RFC 9622 §6.2, §8.1, §9.1.3).
//!
//! Names follow the RFC in Rust case; [`TransportProperties::set`] and
//! [`ConnectionProperties::set`] also take the RFC's camelCase names,
//! case-insensitively (RFC 9622 §4.1), and reject unknown ones.

mod connection;
mod message;
mod preference;
mod selection;

pub use connection::{
    CapacityProfile, ChecksumCoverage, ConnScheduler, ConnState, ConnectionProperties,
    MultipathPolicy, TcpProperties,
};
pub use message::MessageProperties;
pub use preference::Preference;
pub use selection::{Direction, Multipath, SelectionProperty, TransportProperties};

use std::time::Duration;

/// A property value given by name (for [`TransportProperties::set`] and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    /// A preference level.
    Preference(Preference),
    /// A Boolean.
    Bool(bool),
    /// An integer.
    Integer(u64),
    /// A duration; `None` means Disabled / infinite.
    Duration(Option<Duration>),
    /// An enumeration value or text, by name.
    Text(String),
}

impl From<Preference> for PropertyValue {
    fn from(p: Preference) -> Self {
        PropertyValue::Preference(p)
    }
}
impl From<bool> for PropertyValue {
    fn from(b: bool) -> Self {
        PropertyValue::Bool(b)
    }
}
impl From<u64> for PropertyValue {
    fn from(v: u64) -> Self {
        PropertyValue::Integer(v)
    }
}
impl From<Duration> for PropertyValue {
    fn from(d: Duration) -> Self {
        PropertyValue::Duration(Some(d))
    }
}
impl From<&str> for PropertyValue {
    fn from(s: &str) -> Self {
        PropertyValue::Text(s.to_string())
    }
}

impl PropertyValue {
    fn kind(&self) -> &'static str {
        match self {
            PropertyValue::Preference(_) => "a preference",
            PropertyValue::Bool(_) => "a boolean",
            PropertyValue::Integer(_) => "an integer",
            PropertyValue::Duration(_) => "a duration",
            PropertyValue::Text(_) => "text",
        }
    }
}

/// The error for a value of the wrong type.
pub(crate) fn wrong_type(name: &str, expected: &str, got: &PropertyValue) -> crate::Error {
    crate::Error::invalid_configuration(format!(
        "property `{name}` takes {expected}, not {}",
        got.kind()
    ))
}

/// Normalise an RFC property name for comparison: case-insensitive, `_` ignored.
pub(crate) fn norm_name(name: &str) -> String {
    norm(name)
}

pub(crate) fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}
