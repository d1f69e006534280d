//! Message Properties (RFC 9622 §9.1.3).

use super::{norm, wrong_type, CapacityProfile, ChecksumCoverage, PropertyValue};
use crate::error::Error;
use std::time::Duration;

/// The properties of one Message being sent. Defaults come from the
/// Preconnection (`TransportProperties::message_defaults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageProperties {
    /// `msgLifetime` (§9.1.3.1): drop the Message if it was not handed to the
    /// stack within this time; `None` = infinite.
    pub msg_lifetime: Option<Duration>,
    /// `msgPriority` (§9.1.3.2), default 100, lower is more important.
    pub msg_priority: u32,
    /// `msgOrdered` (§9.1.3.3); `None` = the value of preserveOrder.
    pub msg_ordered: Option<bool>,
    /// `safelyReplayable` (§9.1.3.4), default false.
    pub safely_replayable: bool,
    /// `final` (§9.1.3.5): the last Message of this direction.
    pub final_: bool,
    /// `msgChecksumLen` (§9.1.3.6).
    pub msg_checksum_len: ChecksumCoverage,
    /// `msgReliable` (§9.1.3.7); `None` = the value of reliability.
    pub msg_reliable: Option<bool>,
    /// `msgCapacityProfile` (§9.1.3.8); `None` = connCapacityProfile.
    pub msg_capacity_profile: Option<CapacityProfile>,
    /// `noFragmentation` (§9.1.3.9).
    pub no_fragmentation: bool,
    /// `noSegmentation` (§9.1.3.10).
    pub no_segmentation: bool,
}

impl Default for MessageProperties {
    fn default() -> Self {
        MessageProperties {
            msg_lifetime: None,
            msg_priority: 100,
            msg_ordered: None,
            safely_replayable: false,
            final_: false,
            msg_checksum_len: ChecksumCoverage::Full,
            msg_reliable: None,
            msg_capacity_profile: None,
            no_fragmentation: false,
            no_segmentation: false,
        }
    }
}

impl MessageProperties {
    /// Set a Message Property by RFC name (`msgLifetime`, `final`, ...).
    pub fn set(&mut self, name: &str, value: impl Into<PropertyValue>) -> Result<(), Error> {
        self.set_value(name, value.into())
    }

    /// [`set`](Self::set), as a builder.
    pub fn with(mut self, name: &str, value: impl Into<PropertyValue>) -> Result<Self, Error> {
        self.set(name, value)?;
        Ok(self)
    }

    // One copy in the program, whatever the callers' value types.
    fn set_value(&mut self, name: &str, v: PropertyValue) -> Result<(), Error> {
        let b = |v: &PropertyValue| match v {
            PropertyValue::Bool(b) => Ok(*b),
            other => Err(wrong_type(name, "a boolean", other)),
        };
        match norm(name).as_str() {
            "msglifetime" => {
                self.msg_lifetime = match &v {
                    PropertyValue::Duration(d) => *d,
                    PropertyValue::Integer(ms) => Some(Duration::from_millis(*ms)),
                    other => return Err(wrong_type(name, "a duration", other)),
                }
            }
            "msgpriority" => match v {
                PropertyValue::Integer(p) => {
                    self.msg_priority = u32::try_from(p).map_err(|_| {
                        Error::invalid_configuration(format!("msgPriority {p} is too large"))
                    })?
                }
                other => return Err(wrong_type(name, "an integer", &other)),
            },
            "msgordered" => self.msg_ordered = Some(b(&v)?),
            "safelyreplayable" => self.safely_replayable = b(&v)?,
            "final" => self.final_ = b(&v)?,
            "msgchecksumlen" => {
                self.msg_checksum_len = match &v {
                    PropertyValue::Integer(n) => {
                        ChecksumCoverage::Bytes(u32::try_from(*n).map_err(|_| {
                            Error::invalid_configuration(format!("msgChecksumLen {n} is too large"))
                        })?)
                    }
                    PropertyValue::Text(t) if norm(t) == "fullcoverage" => ChecksumCoverage::Full,
                    other => return Err(wrong_type(name, "an integer or `fullCoverage`", other)),
                }
            }
            "msgreliable" => self.msg_reliable = Some(b(&v)?),
            "msgcapacityprofile" => match &v {
                PropertyValue::Text(t) => {
                    self.msg_capacity_profile = Some(CapacityProfile::parse(t)?)
                }
                other => return Err(wrong_type(name, "a capacity profile name", other)),
            },
            "nofragmentation" => self.no_fragmentation = b(&v)?,
            "nosegmentation" => self.no_segmentation = b(&v)?,
            _ => {
                return Err(Error::invalid_configuration(format!(
                    "unknown Message Property `{name}`"
                )))
            }
        }
        Ok(())
    }
}
