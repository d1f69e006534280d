//! The www demo server's parts (`demo-server`): the HTTP routes, the fault
//! relay in front of the echo Listener, the WebTransport certificate, and
//! the native race scenarios (shared with `racing-demo`).

pub mod cert;
pub mod echo;
pub mod faults;
pub mod http;
pub mod races;
