//! Racing timer values (RFC 8305, Happy Eyeballs v3) and the racing mode.

use crate::error::Error;
use std::time::Duration;

/// How the children of the candidate tree are raced (RFC 9623 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RacingMode {
    /// The first leaf starts at once, each next one after the connection
    /// attempt delay, or at once when every running attempt has failed.
    #[default]
    Staggered,
    /// The next leaf starts only after the previous one failed.
    Failover,
    /// Every leaf starts at once. The RFC says this SHOULD NOT be the default.
    Simultaneous,
}

/// Timer values and limits of one race.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RacingConfig {
    /// Connection Attempt Delay: 250 ms by default, 10 ms to 2 s.
    pub connection_attempt_delay: Duration,
    /// Resolution Delay: how long to wait for AAAA after A arrived first (50 ms).
    pub resolution_delay: Duration,
    /// The racing mode.
    pub mode: RacingMode,
    /// Give up with `Timeout` after this long (the Initiate timeout / connTimeout).
    pub timeout: Option<Duration>,
    /// Cap on the number of leaves (DNS answers can inflate the tree, RFC 9623 §11).
    pub max_leaves: usize,
    /// Whether the delay after an attempt follows its remembered handshake
    /// time (the TransportContext's, see [`crate::context`]) where one is
    /// known; true by default, false once the application sets the delay.
    pub adaptive_delay: bool,
}

impl RacingConfig {
    /// RFC 8305 default Connection Attempt Delay.
    pub const DEFAULT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);
    /// RFC 8305 MUST NOT go below this.
    pub const MIN_ATTEMPT_DELAY: Duration = Duration::from_millis(10);
    /// RFC 8305 Maximum Connection Attempt Delay.
    pub const MAX_ATTEMPT_DELAY: Duration = Duration::from_secs(2);
    /// RFC 8305 Resolution Delay.
    pub const DEFAULT_RESOLUTION_DELAY: Duration = Duration::from_millis(50);
    /// Default cap on leaves.
    pub const DEFAULT_MAX_LEAVES: usize = 64;

    /// Check the values are within the RFC bounds; the error names the value.
    pub fn validate(&self) -> Result<(), Error> {
        let d = self.connection_attempt_delay;
        if d < Self::MIN_ATTEMPT_DELAY || d > Self::MAX_ATTEMPT_DELAY {
            return Err(Error::invalid_configuration(format!(
                "connection attempt delay {} ms is outside 10 ms ..= 2000 ms (RFC 8305 §8)",
                d.as_millis()
            )));
        }
        if self.resolution_delay > Self::MAX_ATTEMPT_DELAY {
            return Err(Error::invalid_configuration(format!(
                "resolution delay {} ms is over 2000 ms",
                self.resolution_delay.as_millis()
            )));
        }
        if self.max_leaves == 0 {
            return Err(Error::invalid_configuration(
                "max_leaves must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for RacingConfig {
    fn default() -> Self {
        RacingConfig {
            connection_attempt_delay: Self::DEFAULT_ATTEMPT_DELAY,
            resolution_delay: Self::DEFAULT_RESOLUTION_DELAY,
            mode: RacingMode::Staggered,
            timeout: None,
            max_leaves: Self::DEFAULT_MAX_LEAVES,
            adaptive_delay: true,
        }
    }
}
