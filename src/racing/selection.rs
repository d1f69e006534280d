//! Selection: filter and rank protocol stacks by the transport properties (RFC 9623 §4.1.3).
