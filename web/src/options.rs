//! The npm package's options, parsed: `new Preconnection(options)`,
//! Connection Properties and Message Properties, from plain [`Value`]s.
//!
//! No JS here, so the same parser runs natively: it is unit-tested below and
//! fuzzed with libFuzzer (`fuzz/`, target `npm_options`, whose corpus the
//! native tests replay). In the browser, `convert.rs` reads the page's object
//! into a [`Value`] first (through bindings that catch what a getter or a
//! Proxy trap throws), then hands it here. Every bad input is an
//! [`OptionError`] that says what was wrong; nothing panics.

use postsocket::framer::{DelimiterFramer, LengthPrefixFramer};
use postsocket::{
    ConnectionProperties, Error, ErrorReason, MessageContext, Preconnection, PropertyValue,
    RemoteEndpoint, SecurityParameters, StackId, TransportProperties,
};
use std::time::Duration;

/// A JS value, as far as the options read it.
#[derive(Clone)]
pub enum Value {
    /// `undefined`: an option that is not set.
    Undefined,
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// An array's elements.
    Array(Vec<Value>),
    /// An object's own enumerable `[key, value]` pairs, in order.
    Object(Vec<(String, Value)>),
    /// Anything else, by what `typeof` says of it (`function`, `symbol`,
    /// `bigint`), or `object` for one nested deeper than the options go.
    Other(String),
}

/// A bad option: the name of the JS `Error` to throw
/// (`InvalidConfiguration` or `InvalidMessageProperties`) and what was wrong.
#[derive(Debug)]
pub struct OptionError {
    /// The RFC 9622 name of the error (the JS `Error`'s `name`).
    pub name: &'static str,
    /// What was wrong.
    pub error: Error,
}

impl OptionError {
    fn new(name: &'static str, error: Error) -> Self {
        OptionError { name, error }
    }
}

/// An `InvalidConfiguration` saying `message`.
fn invalid(message: impl Into<String>) -> OptionError {
    OptionError::new(
        "InvalidConfiguration",
        Error::new(ErrorReason::InvalidConfiguration, message),
    )
}

/// postsocket's own error about a configuration, as an `InvalidConfiguration`.
fn configuration(e: Error) -> OptionError {
    OptionError::new("InvalidConfiguration", e)
}

/// The option names `new Preconnection(options)` knows.
pub const OPTIONS: &[&str] = &[
    "remote",
    "properties",
    "protocols",
    "security",
    "protocolOptions",
    "connectionAttemptDelay",
    "framer",
];

/// The framers `options.framer` names (RFC 9622 §9.1.2).
pub const FRAMERS: &[&str] = &["lengthPrefix", "line"];

/// `NewPreconnection(...)` from an options object (see `index.d.ts`).
pub fn preconnection(options: &Value) -> Result<Preconnection, OptionError> {
    let mut remotes = Vec::new();
    let mut props = TransportProperties::new();
    let mut security = SecurityParameters::new();
    let mut protocols = None;
    let mut delay = None;
    let mut framer = None;
    for (key, value) in entries(options, "options")? {
        if matches!(value, Value::Undefined) {
            continue;
        }
        match key.as_str() {
            "remote" => remotes = parse_remotes(value)?,
            "properties" => props = properties(props, value, "properties")?,
            "protocolOptions" => {
                for (name, v) in entries(value, "protocolOptions")? {
                    let v = string(v, &format!("protocolOptions.{name}"))?;
                    props.set(name, v).map_err(configuration)?;
                }
            }
            "protocols" => {
                let names = strings(value, "protocols")?;
                let stacks = names
                    .iter()
                    .map(|n| StackId::parse(n))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(configuration)?;
                protocols = Some(stacks);
            }
            "security" => security = parse_security(value)?,
            "connectionAttemptDelay" => {
                delay = Some(Duration::from_millis(whole_number(value, key)?));
            }
            "framer" => {
                let name = string(value, "framer")?;
                if !FRAMERS.contains(&name) {
                    return Err(invalid(format!(
                        "unknown framer `{name}`; known: {}",
                        FRAMERS.join(", ")
                    )));
                }
                framer = Some(name);
            }
            other => {
                return Err(invalid(format!(
                    "unknown option `{other}`; known: {}",
                    OPTIONS.join(", ")
                )))
            }
        }
    }
    props.check_consistency().map_err(configuration)?;
    let mut pre = Preconnection::new(Vec::new(), remotes, props, security);
    if let Some(stacks) = protocols {
        pre.set_protocols(stacks);
    }
    if let Some(d) = delay {
        pre.set_connection_attempt_delay(d);
    }
    match framer {
        Some("lengthPrefix") => {
            pre.add_framer(LengthPrefixFramer::new());
        }
        Some(_) => {
            pre.add_framer(DelimiterFramer::line());
        }
        None => {}
    }
    Ok(pre)
}

/// Each property of the object `value` (named `what`), by RFC name, its
/// value read by [`property_value`], handed to `set`.
fn each_property(
    value: &Value,
    what: &str,
    mut set: impl FnMut(&str, PropertyValue) -> Result<(), OptionError>,
) -> Result<(), OptionError> {
    for (name, v) in entries(value, what)? {
        set(name, property_value(name, v)?)?;
    }
    Ok(())
}

/// `base` with the properties of the object `value` (named `what`) set on it,
/// by RFC name.
pub fn properties(
    mut base: TransportProperties,
    value: &Value,
    what: &str,
) -> Result<TransportProperties, OptionError> {
    each_property(value, what, |name, v| {
        base.set(name, v).map_err(configuration)
    })?;
    Ok(base)
}

/// `base` with the Connection Properties of the object `value` set on it,
/// by RFC name (Clone's argument).
pub fn connection_properties(
    mut base: ConnectionProperties,
    value: &Value,
) -> Result<ConnectionProperties, OptionError> {
    each_property(value, "properties", |name, v| {
        base.set(name, v).map_err(configuration)
    })?;
    Ok(base)
}

/// A MessageContext from Message Properties by RFC name (`undefined` or
/// `null`: none); a bad one is an `InvalidMessageProperties`.
pub fn message_context(properties: &Value) -> Result<Option<MessageContext>, OptionError> {
    if matches!(properties, Value::Undefined | Value::Null) {
        return Ok(None);
    }
    let mut ctx = MessageContext::new();
    each_property(properties, "messageProperties", |name, v| {
        ctx.add(name, v)
            .map_err(|e| OptionError::new("InvalidMessageProperties", e))
    })?;
    Ok(Some(ctx))
}

/// A property value: a string (a preference such as `'require'`, or an
/// enumeration value), a boolean, a whole number (durations in
/// milliseconds) or `null` (a duration that is Disabled / infinite).
pub fn property_value(name: &str, v: &Value) -> Result<PropertyValue, OptionError> {
    match v {
        Value::String(s) => Ok(PropertyValue::Text(s.clone())),
        Value::Bool(b) => Ok(PropertyValue::Bool(*b)),
        Value::Number(_) => Ok(PropertyValue::Integer(whole_number(v, name)?)),
        Value::Null => Ok(PropertyValue::Duration(None)),
        other => Err(invalid(format!(
            "property `{name}` takes a string, boolean, number or null, not {}",
            type_of(other)
        ))),
    }
}

/// A non-negative whole number (at most 2^53 − 1), or an error naming `what`.
pub fn whole_number(v: &Value, what: &str) -> Result<u64, OptionError> {
    match v {
        Value::Number(n) if *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0 => {
            Ok(*n as u64)
        }
        Value::Number(n) => Err(invalid(format!(
            "`{what}` must be a non-negative whole number, not {}",
            number_text(*n)
        ))),
        other => Err(invalid(format!(
            "`{what}` must be a number, not {}",
            type_of(other)
        ))),
    }
}

/// A number as JS writes it (`JSON.stringify`): in the browser by JS itself,
/// because Rust's float formatting would add about 10 KB to the .wasm.
#[cfg(web)]
fn number_text(n: f64) -> String {
    String::from(js_sys::JSON::stringify(&n.into()).unwrap_or_default())
}

/// A number as JS writes it (`JSON.stringify`; close enough natively).
#[cfg(not(web))]
fn number_text(n: f64) -> String {
    if n.is_finite() {
        format!("{n}")
    } else {
        "null".into()
    }
}

/// The pairs of an options object; `what` names it in the error when it is
/// not an object.
fn entries<'a>(v: &'a Value, what: &str) -> Result<&'a [(String, Value)], OptionError> {
    match v {
        Value::Object(pairs) => Ok(pairs),
        _ => Err(invalid(format!("`{what}` must be an object"))),
    }
}

/// A string, or an error naming `what`.
fn string<'a>(v: &'a Value, what: &str) -> Result<&'a str, OptionError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(invalid(format!(
            "`{what}` must be a string, not {}",
            type_of(other)
        ))),
    }
}

/// A list of strings: an array of them, or one string.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, OptionError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, s)| string(s, &format!("{what}[{i}]")).map(str::to_string))
            .collect(),
        other => Ok(vec![string(other, what)?.to_string()]),
    }
}

/// What `typeof` says of a value (arrays and `null` by name).
fn type_of(v: &Value) -> &str {
    match v {
        Value::Undefined => "undefined",
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "an array",
        Value::Object(_) => "object",
        Value::Other(kind) => kind,
    }
}

/// `remote`: one `{ host | ip, port, service }` object, or an array of them.
fn parse_remotes(value: &Value) -> Result<Vec<RemoteEndpoint>, OptionError> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, r)| parse_remote(r, &format!("remote[{i}]")))
            .collect(),
        one => Ok(vec![parse_remote(one, "remote")?]),
    }
}

fn parse_remote(value: &Value, what: &str) -> Result<RemoteEndpoint, OptionError> {
    let mut r = RemoteEndpoint::new();
    for (key, v) in entries(value, what)? {
        if matches!(v, Value::Undefined) {
            continue;
        }
        let field = format!("{what}.{key}");
        r = match key.as_str() {
            "host" | "hostName" => r
                .with_host_name(string(v, &field)?)
                .map_err(configuration)?,
            "ip" | "ipAddress" => {
                let text = string(v, &field)?;
                let ip = text
                    .parse()
                    .map_err(|_| invalid(format!("`{field}`: `{text}` is not an IP address")))?;
                r.with_ip_address(ip).map_err(configuration)?
            }
            "port" => {
                let n = whole_number(v, &field)?;
                let port = u16::try_from(n)
                    .map_err(|_| invalid(format!("`{field}`: {n} is not a port number")))?;
                r.with_port(port).map_err(configuration)?
            }
            "service" => r.with_service(string(v, &field)?).map_err(configuration)?,
            other => {
                return Err(invalid(format!(
                    "unknown field `{other}` in `{what}`; known: host, ip, port, service"
                )))
            }
        };
    }
    if r.host_name().is_none() && r.ip_address().is_none() {
        return Err(invalid(format!("`{what}` needs a `host` or an `ip`")));
    }
    Ok(r)
}

/// `security`: `{ disabled: true }`, `{ opportunistic: true }`, or security
/// parameters by RFC name (`pinnedServerCertificate`, `alpn`, `serverName`, ...).
fn parse_security(value: &Value) -> Result<SecurityParameters, OptionError> {
    let mut security = SecurityParameters::new();
    for (key, v) in entries(value, "security")? {
        let flag = |v: &Value| match v {
            Value::Bool(b) => Ok(*b),
            _ => Err(invalid(format!("`security.{key}` must be true or false"))),
        };
        match (key.as_str(), v) {
            (_, Value::Undefined) => {}
            ("disabled", v) => {
                if flag(v)? {
                    security = merge_mode(SecurityParameters::disabled(), &security);
                }
            }
            ("opportunistic", v) => {
                if flag(v)? {
                    security = merge_mode(SecurityParameters::opportunistic(), &security);
                }
            }
            (name, v) => {
                let values = match v {
                    Value::Bool(b) => vec![b.to_string()],
                    Value::Number(_) => {
                        vec![whole_number(v, &format!("security.{name}"))?.to_string()]
                    }
                    v => strings(v, &format!("security.{name}"))?,
                };
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                security.set(name, &values).map_err(configuration)?;
            }
        }
    }
    Ok(security)
}

/// `base` (a mode constructor's result) with the parameters already set on `set`.
fn merge_mode(mut base: SecurityParameters, set: &SecurityParameters) -> SecurityParameters {
    base.allowed_security_protocols = set.allowed_security_protocols.clone();
    base.alpn = set.alpn.clone();
    base.pinned_server_certificate = set.pinned_server_certificate.clone();
    base.trusted_ca = set.trusted_ca.clone();
    base.server_name = set.server_name.clone();
    base.max_cached_sessions = set.max_cached_sessions;
    base.cached_session_lifetime_seconds = set.cached_session_lifetime_seconds;
    base.require_client_certificate = set.require_client_certificate;
    base
}

/// The fuzz harness (`fuzz/fuzz_targets/npm_options.rs`, and the corpus
/// replay in `tests/options_corpus.rs`): any bytes are decoded into option
/// values (see [`fuzz_value`]) and parsed as Preconnection options, Message
/// Properties, Connection Properties and a property value. Each parse gives
/// a Preconnection or an error that names an RFC error and says what was
/// wrong; a panic is the finding.
pub fn fuzz(data: &[u8]) {
    let mut input = data;
    let values: Vec<Value> = (0..4).map(|_| fuzz_value(&mut input, 0)).collect();
    let named = |e: &OptionError, names: &[&str]| {
        assert!(names.contains(&e.name), "error named {}", e.name);
        assert!(!e.error.message.is_empty(), "an error without a text");
    };
    if let Err(e) = preconnection(&values[0]) {
        named(&e, &["InvalidConfiguration"]);
    }
    if let Err(e) = message_context(&values[1]) {
        named(&e, &["InvalidConfiguration", "InvalidMessageProperties"]);
    }
    if let Err(e) = properties(TransportProperties::new(), &values[2], "properties") {
        named(&e, &["InvalidConfiguration"]);
    }
    if let Err(e) = connection_properties(ConnectionProperties::default(), &values[2]) {
        named(&e, &["InvalidConfiguration"]);
    }
    if let Err(e) = property_value("connTimeout", &values[3]) {
        named(&e, &["InvalidConfiguration"]);
    }
}

/// The words the options use beside [`OPTIONS`] and [`FRAMERS`], for
/// [`fuzz_value`] to pick from: field, property, security and stack names
/// and some of their values.
const WORDS: &[&str] = &[
    "host",
    "hostName",
    "ip",
    "ipAddress",
    "port",
    "service",
    "disabled",
    "opportunistic",
    "alpn",
    "serverName",
    "pinnedServerCertificate",
    "trustedCa",
    "maxCachedSessions",
    "reliability",
    "preserveMsgBoundaries",
    "multistreaming",
    "zeroRttMsg",
    "connTimeout",
    "connPriority",
    "msgLifetime",
    "msgPriority",
    "msgOrdered",
    "final",
    "safelyReplayable",
    "msgReliable",
    "require",
    "prefer",
    "noPreference",
    "avoid",
    "prohibit",
    "ws",
    "wss",
    "wt",
    "tcp",
    "quic",
    "webrtc",
    "ws.path",
    "example.com",
    "127.0.0.1",
    "::1",
];

/// One [`Value`] from fuzz bytes: a tag byte picks the kind, the bytes after
/// it give its content; nested at most 5 levels; the end of the input reads
/// as `undefined`.
pub fn fuzz_value(input: &mut &[u8], depth: usize) -> Value {
    let Some((&tag, rest)) = input.split_first() else {
        return Value::Undefined;
    };
    *input = rest;
    let mut byte = || match input.split_first() {
        Some((&b, rest)) => {
            *input = rest;
            b
        }
        None => 0,
    };
    match tag % 10 {
        0 => Value::Undefined,
        1 => Value::Null,
        2 => Value::Bool(byte() & 1 == 1),
        3 => Value::Number(f64::from(byte()) * 1000.0 + f64::from(byte())),
        4 => {
            let mut b = [0u8; 8];
            b.iter_mut().for_each(|x| *x = byte());
            Value::Number(f64::from_le_bytes(b))
        }
        5 => {
            let mut words = OPTIONS.iter().chain(FRAMERS).chain(WORDS);
            let n = OPTIONS.len() + FRAMERS.len() + WORDS.len();
            Value::String(
                words
                    .nth(usize::from(byte()) % n)
                    .unwrap_or(&"")
                    .to_string(),
            )
        }
        6 => {
            let n = usize::from(byte() % 16);
            let take = n.min(input.len());
            let (s, rest) = input.split_at(take);
            *input = rest;
            Value::String(String::from_utf8_lossy(s).into_owned())
        }
        7 | 8 if depth < 5 => {
            let n = usize::from(byte() % 6);
            if tag % 10 == 7 {
                Value::Array((0..n).map(|_| fuzz_value(input, depth + 1)).collect())
            } else {
                Value::Object(
                    (0..n)
                        .map(|_| {
                            let key = match fuzz_value(input, depth + 1) {
                                Value::String(s) => s,
                                _ => "key".to_string(),
                            };
                            (key, fuzz_value(input, depth + 1))
                        })
                        .collect(),
                )
            }
        }
        _ => Value::Other("function".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }
    fn s(t: &str) -> Value {
        Value::String(t.into())
    }

    #[test]
    fn options_make_a_preconnection() {
        let options = obj(&[
            (
                "remote",
                obj(&[("host", s("example.com")), ("port", Value::Number(443.0))]),
            ),
            ("protocols", Value::Array(vec![s("wss"), s("wt")])),
            (
                "properties",
                obj(&[("preserveMsgBoundaries", s("require"))]),
            ),
            ("framer", s("lengthPrefix")),
            ("security", obj(&[("alpn", s("h3"))])),
            ("connectionAttemptDelay", Value::Number(100.0)),
            ("ignored", Value::Undefined),
        ]);
        if let Err(e) = preconnection(&options) {
            panic!("{}", e.error);
        }
    }

    #[test]
    fn bad_options_say_what_was_wrong() {
        let cases = [
            (s("x"), "`options` must be an object"),
            (obj(&[("colour", s("red"))]), "unknown option `colour`"),
            (obj(&[("framer", s("json"))]), "unknown framer `json`"),
            (
                obj(&[("remote", obj(&[("port", Value::Number(80.0))]))]),
                "`remote` needs a `host` or an `ip`",
            ),
            (
                obj(&[("remote", obj(&[("ip", s("1.2.3"))]))]),
                "`remote.ip`: `1.2.3` is not an IP address",
            ),
            (
                obj(&[(
                    "remote",
                    Value::Array(vec![obj(&[
                        ("ip", s("::1")),
                        ("port", Value::Number(70000.0)),
                    ])]),
                )]),
                "`remote[0].port`: 70000 is not a port number",
            ),
            (
                obj(&[("connectionAttemptDelay", Value::Number(-1.0))]),
                "`connectionAttemptDelay` must be a non-negative whole number, not -1",
            ),
            (
                obj(&[("protocols", Value::Array(vec![Value::Null]))]),
                "`protocols[0]` must be a string, not null",
            ),
            (
                obj(&[("properties", obj(&[("connTimeout", Value::Array(vec![]))]))]),
                "property `connTimeout` takes a string, boolean, number or null, not an array",
            ),
            (
                obj(&[("security", obj(&[("disabled", s("yes"))]))]),
                "`security.disabled` must be true or false",
            ),
        ];
        for (options, text) in cases {
            let Err(e) = preconnection(&options) else {
                panic!("taken: {text}")
            };
            assert_eq!(e.name, "InvalidConfiguration");
            assert!(
                e.error.message.contains(text),
                "{} / {text}",
                e.error.message
            );
        }
    }

    #[test]
    fn message_properties_name_their_error() {
        assert!(message_context(&Value::Null).unwrap().is_none());
        let ok = obj(&[
            ("msgLifetime", Value::Number(5.0)),
            ("final", Value::Bool(true)),
        ]);
        assert!(message_context(&ok).unwrap().is_some());
        let unknown = obj(&[("msgColour", s("red"))]);
        assert_eq!(
            message_context(&unknown).unwrap_err().name,
            "InvalidMessageProperties"
        );
    }

    #[test]
    fn fuzz_bytes_decode_into_every_kind_of_value() {
        let mut seen = std::collections::HashSet::new();
        for tag in 0u8..10 {
            let data = [tag, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9];
            let v = fuzz_value(&mut &data[..], 0);
            seen.insert(std::mem::discriminant(&v));
            fuzz(&data);
        }
        assert_eq!(seen.len(), 8, "every kind of Value");
    }
}
