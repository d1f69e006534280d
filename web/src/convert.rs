//! Conversions at the JS boundary: options objects in, plain objects and
//! `Error`s out. Every bad input becomes an `Error` that says what was wrong.
//!
//! Reading a page's object may run the page's code (a getter, a Proxy
//! trap), which may throw. Such an exception must never unwind through
//! wasm: it would skip restoring wasm-bindgen's shadow stack pointer, and
//! later calls would corrupt memory. So objects and arrays are read only
//! through bindings that catch (`Object.entries`, `Array.from`), and what
//! the page threw is handed back to it as is.

use crate::options::{self, OptionError, Value};
use postsocket::{Error, Preference, PropertyValue};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// A serde value as a plain JS object (JSON-compatible: maps become objects).
pub(crate) fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(JsValue::from)
}

thread_local! {
    /// The package's `TransportError` class, once `index.js` registered it.
    static ERROR_CLASS: std::cell::RefCell<Option<js_sys::Function>> =
        const { std::cell::RefCell::new(None) };
}

/// Make every error this module gives JS an instance of `class` (the
/// package's `TransportError`, a subclass of `Error`): it is constructed as
/// `new class(message, { name, reason, candidates })`. Called once by
/// `init()` in `index.js`.
#[wasm_bindgen(js_name = setErrorClass)]
pub fn set_error_class(class: js_sys::Function) {
    ERROR_CLASS.with(|c| *c.borrow_mut() = Some(class));
}

/// A JS `Error` for a postsocket error: `name` is the RFC event
/// (`EstablishmentError`, `SendError`, ...), the message is the error's text
/// (every candidate's failure included); `reason` holds the RFC 9623 reason
/// and `candidates` the per-candidate failures as plain objects. A
/// `TransportError` once the package registered the class (see
/// [`set_error_class`]), else a plain `Error` with the same fields.
/// Its standard `cause`, as the Rust error's source: for an error with
/// failed candidates, the first one as a `TransportError` named
/// `CandidateFailure` (its reason, its text, no candidates).
pub(crate) fn error_to_js(name: &str, e: &Error) -> JsValue {
    let candidates = to_js(&e.candidates).unwrap_or_else(|_| js_sys::Array::new().into());
    let message = JsValue::from(e.to_string());
    let class = ERROR_CLASS.with(|c| c.borrow().clone());
    if let Some(class) = class {
        let options = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&options, &"name".into(), &name.into());
        let _ = js_sys::Reflect::set(&options, &"reason".into(), &e.reason.as_str().into());
        let _ = js_sys::Reflect::set(&options, &"candidates".into(), &candidates);
        if let Some(first) = e.candidates.first() {
            let cause = error_to_js(
                "CandidateFailure",
                &Error::new(first.reason, first.to_string()),
            );
            let _ = js_sys::Reflect::set(&options, &"cause".into(), &cause);
        }
        let args = js_sys::Array::of2(&message, &options);
        if let Ok(err) = js_sys::Reflect::construct(&class, &args) {
            return err;
        }
    }
    let js = js_sys::Error::new(&e.to_string());
    js.set_name(name);
    let obj: &JsValue = js.as_ref();
    let _ = js_sys::Reflect::set(obj, &"reason".into(), &e.reason.as_str().into());
    let _ = js_sys::Reflect::set(obj, &"candidates".into(), &candidates);
    js.into()
}

#[wasm_bindgen]
extern "C" {
    /// `Object.entries`, catching what a getter or a Proxy trap throws.
    #[wasm_bindgen(catch, js_namespace = Object, js_name = entries)]
    fn object_entries(obj: &JsValue) -> Result<js_sys::Array, JsValue>;
    /// `Array.from`, catching what an iterator, a getter or a trap throws.
    #[wasm_bindgen(catch, js_namespace = Array, js_name = from)]
    fn array_from(v: &JsValue) -> Result<js_sys::Array, JsValue>;
}

/// How deep [`value`] reads a page's object: the options go four levels
/// deep (`options.remote[0].port`); a value below that reads as
/// [`Value::Other`], as does anything that is no plain value, array or
/// object, and an object or array that refers to itself never recurses
/// without end.
const DEPTH: usize = 6;

/// A page's value as the options parser (`options.rs`) reads it: objects
/// by their own enumerable `[key, value]` pairs, arrays by their elements.
/// What a getter, iterator or Proxy trap throws is handed back as is.
pub(crate) fn value(v: &JsValue) -> Result<Value, JsValue> {
    value_at(v, 0)
}

fn value_at(v: &JsValue, depth: usize) -> Result<Value, JsValue> {
    Ok(if v.is_undefined() {
        Value::Undefined
    } else if v.is_null() {
        Value::Null
    } else if let Some(b) = v.as_bool() {
        Value::Bool(b)
    } else if let Some(n) = v.as_f64() {
        Value::Number(n)
    } else if let Some(s) = v.as_string() {
        Value::String(s)
    } else if depth >= DEPTH {
        Value::Other(type_of(v))
    } else if js_sys::Array::is_array(v) {
        // A fresh copy first: reading it runs no page code.
        let items = array_from(v)?;
        Value::Array(
            items
                .iter()
                .map(|e| value_at(&e, depth + 1))
                .collect::<Result<_, _>>()?,
        )
    } else if v.is_object() {
        // A fresh array of fresh `[key, value]` arrays: reading them runs
        // no page code.
        let pairs = object_entries(v)?;
        Value::Object(
            pairs
                .iter()
                .map(|pair| {
                    let pair: js_sys::Array = pair.unchecked_into();
                    let key = pair.get(0).as_string().unwrap_or_default();
                    Ok((key, value_at(&pair.get(1), depth + 1)?))
                })
                .collect::<Result<_, JsValue>>()?,
        )
    } else {
        Value::Other(type_of(v))
    })
}

/// A bad option as the JS `Error` it names.
pub(crate) fn option_error(e: OptionError) -> JsValue {
    error_to_js(e.name, &e.error)
}

/// A non-negative whole number from JS, or an `InvalidConfiguration`
/// naming `what`.
pub(crate) fn whole_number(n: f64, what: &str) -> Result<u64, JsValue> {
    options::whole_number(&Value::Number(n), what).map_err(option_error)
}

/// A property value from JS (see [`options::property_value`]).
pub(crate) fn property_value(name: &str, v: &JsValue) -> Result<PropertyValue, JsValue> {
    options::property_value(name, &value(v)?).map_err(option_error)
}

/// A property value for JS: preferences as `'require'`, `'prefer'`,
/// `'noPreference'`, `'avoid'`, `'prohibit'`; durations in milliseconds
/// (`null` for Disabled).
pub(crate) fn property_to_js(v: &PropertyValue) -> JsValue {
    match v {
        PropertyValue::Preference(p) => match p {
            Preference::Require => "require",
            Preference::Prefer => "prefer",
            Preference::NoPreference => "noPreference",
            Preference::Avoid => "avoid",
            Preference::Prohibit => "prohibit",
        }
        .into(),
        PropertyValue::Bool(b) => (*b).into(),
        PropertyValue::Integer(n) => (*n as f64).into(),
        PropertyValue::Duration(Some(d)) => (d.as_secs_f64() * 1000.0).into(),
        PropertyValue::Duration(None) => JsValue::NULL,
        PropertyValue::Text(t) => t.as_str().into(),
    }
}

fn type_of(v: &JsValue) -> String {
    if v.is_null() {
        "null".into()
    } else if js_sys::Array::is_array(v) {
        "an array".into()
    } else {
        v.js_typeof().as_string().unwrap_or_default()
    }
}
