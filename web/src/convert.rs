//! Conversions at the JS boundary: options objects in, plain objects and
//! `Error`s out. Every bad input becomes an `Error` that says what was wrong.
//!
//! Reading a page's object may run the page's code (a getter, a Proxy
//! trap), which may throw. Such an exception must never unwind through
//! wasm: it would skip restoring wasm-bindgen's shadow stack pointer, and
//! later calls would corrupt memory. So objects and arrays are read only
//! through bindings that catch (`Object.entries`, `Array.from`), and what
//! the page threw is handed back to it as is.

use postsocket::{Error, ErrorReason, Preference, PropertyValue};
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

/// An InvalidConfiguration `Error` with `message`.
pub(crate) fn invalid(message: impl Into<String>) -> JsValue {
    error_to_js(
        "InvalidConfiguration",
        &Error::new(ErrorReason::InvalidConfiguration, message),
    )
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

/// The own enumerable `[key, value]` pairs of an options object; `what`
/// names it in the error when it is not an object.
pub(crate) fn entries(obj: &JsValue, what: &str) -> Result<Vec<(String, JsValue)>, JsValue> {
    if !obj.is_object() || js_sys::Array::is_array(obj) {
        return Err(invalid(format!("`{what}` must be an object")));
    }
    // A fresh array of fresh `[key, value]` arrays: reading them runs no
    // page code.
    Ok(object_entries(obj)?
        .iter()
        .map(|pair| {
            let pair: js_sys::Array = pair.unchecked_into();
            (pair.get(0).as_string().unwrap_or_default(), pair.get(1))
        })
        .collect())
}

/// The elements of an array (checked with `Array.isArray`), copied into a
/// fresh array first.
pub(crate) fn elements(v: &JsValue) -> Result<Vec<JsValue>, JsValue> {
    Ok(array_from(v)?.iter().collect())
}

/// A string, or an error naming `what`.
pub(crate) fn string(v: &JsValue, what: &str) -> Result<String, JsValue> {
    v.as_string()
        .ok_or_else(|| invalid(format!("`{what}` must be a string, not {}", type_of(v))))
}

/// A list of strings: an array of them, or one string.
pub(crate) fn strings(v: &JsValue, what: &str) -> Result<Vec<String>, JsValue> {
    if js_sys::Array::is_array(v) {
        elements(v)?
            .iter()
            .enumerate()
            .map(|(i, s)| string(s, &format!("{what}[{i}]")))
            .collect()
    } else {
        Ok(vec![string(v, what)?])
    }
}

/// A non-negative whole number, or an error naming `what`.
pub(crate) fn whole_number(v: &JsValue, what: &str) -> Result<u64, JsValue> {
    match v.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => Ok(n as u64),
        // The number as JS writes it (Rust's float formatting would add
        // about 10 KB to the .wasm).
        Some(_) => Err(invalid(format!(
            "`{what}` must be a non-negative whole number, not {}",
            String::from(js_sys::JSON::stringify(v).unwrap_or_default())
        ))),
        None => Err(invalid(format!(
            "`{what}` must be a number, not {}",
            type_of(v)
        ))),
    }
}

/// A property value from JS: a string (a preference such as `'require'`, or
/// an enumeration value), a boolean, a whole number (durations in
/// milliseconds) or `null` (a duration that is Disabled / infinite).
pub(crate) fn property_value(name: &str, v: &JsValue) -> Result<PropertyValue, JsValue> {
    if let Some(s) = v.as_string() {
        Ok(PropertyValue::Text(s))
    } else if let Some(b) = v.as_bool() {
        Ok(PropertyValue::Bool(b))
    } else if v.as_f64().is_some() {
        Ok(PropertyValue::Integer(whole_number(v, name)?))
    } else if v.is_null() {
        Ok(PropertyValue::Duration(None))
    } else {
        Err(invalid(format!(
            "property `{name}` takes a string, boolean, number or null, not {}",
            type_of(v)
        )))
    }
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
