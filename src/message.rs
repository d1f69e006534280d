//! Messages and MessageContext (RFC 9622 §9.1).

use crate::endpoint::{LocalEndpoint, RemoteEndpoint};
use crate::error::Error;
use crate::properties::{MessageProperties, PropertyValue};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The first id of the next block of ids a thread takes.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Ids a thread takes from [`NEXT_ID`] at a time.
const ID_BLOCK: u64 = 1024;

thread_local! {
    /// This thread's block of ids: the next one, and the end of the block.
    /// Taking ids in blocks keeps a sender's and a receiver's threads from
    /// contending for one shared counter with every Message.
    static IDS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// A fresh context id, unique within the process (and increasing within
/// one thread).
fn next_id() -> u64 {
    IDS.with(|ids| {
        let (next, end) = ids.get();
        if next < end {
            ids.set((next + 1, end));
            return next;
        }
        let start = NEXT_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
        ids.set((start + 1, start + ID_BLOCK));
        start
    })
}

/// The MessageContext (RFC 9622 §9.1.1): the properties of a Message being
/// sent, or the metadata of a Message received.
///
/// One MessageContext ties partial sends (`end_of_message = false`) into one
/// Message: send every piece with the same context (or a clone of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContext {
    id: u64,
    /// The Message Properties (§9.1.3).
    pub properties: MessageProperties,
    /// Properties set through `add`: one bit per name in [`EXPLICIT`].
    explicit: u16,
    // Shared with the Connection: a received Message carries its endpoints
    // without copying them (contexts move a lot on the data path), both
    // behind one count (one atomic update per received Message).
    endpoints: Option<Arc<Endpoints>>,
    early_data: bool,
    final_: bool,
    /// `None` until a framer adds metadata (most Messages carry none, and an
    /// empty map still costs to drop on the data path); boxed, as contexts
    /// move with every Message.
    #[allow(clippy::box_collection)] // one pointer, not three, in every context
    framer_metadata: Option<Box<BTreeMap<(String, String), String>>>,
}

/// The endpoints of a Connection's received Messages: where they came from
/// and where they arrived, shared by all their contexts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Endpoints {
    /// Inline: the Connection reads its own RemoteEndpoint here too, so it
    /// costs no allocation of its own.
    pub(crate) remote: Option<RemoteEndpoint>,
    pub(crate) local: Option<Arc<LocalEndpoint>>,
}

/// The Message Properties by normalised RFC name; a context's `explicit`
/// bit `i` says that `EXPLICIT[i]` was set through `add`.
const EXPLICIT: [&str; 10] = [
    "msglifetime",
    "msgpriority",
    "msgordered",
    "safelyreplayable",
    "final",
    "msgchecksumlen",
    "msgreliable",
    "msgcapacityprofile",
    "nofragmentation",
    "nosegmentation",
];

/// The `explicit` bit of a normalised property name.
fn explicit_bit(norm: &str) -> u16 {
    EXPLICIT
        .iter()
        .position(|n| *n == norm)
        .map_or(0, |i| 1 << i)
}

impl Default for MessageContext {
    fn default() -> Self {
        MessageContext::new()
    }
}

impl MessageContext {
    /// `NewMessageContext()`: properties left at the Connection's defaults.
    pub fn new() -> Self {
        MessageContext {
            id: next_id(),
            ..MessageContext::placeholder()
        }
    }

    /// A context with id 0, left behind where a Message's context was taken
    /// to hand it back (taking one must not cost a fresh id).
    pub(crate) fn placeholder() -> Self {
        MessageContext {
            id: 0,
            properties: MessageProperties::default(),
            explicit: 0,
            endpoints: None,
            early_data: false,
            final_: false,
            framer_metadata: None,
        }
    }

    /// An id unique to this context (and its clones) within the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `messageContext.add(property, value)`: set a Message Property by RFC name.
    pub fn add(&mut self, name: &str, value: impl Into<PropertyValue>) -> Result<(), Error> {
        self.properties.set(name, value)?;
        let bit = explicit_bit(&crate::properties::norm_name(name));
        debug_assert_ne!(bit, 0, "`{name}` is accepted but missing from EXPLICIT");
        self.explicit |= bit;
        Ok(())
    }

    /// Builder form of [`add`](Self::add).
    pub fn with(mut self, name: &str, value: impl Into<PropertyValue>) -> Result<Self, Error> {
        self.add(name, value)?;
        Ok(self)
    }

    /// Whether the property was set on this context (otherwise the Connection default applies).
    pub fn is_set(&self, name: &str) -> bool {
        self.explicit & explicit_bit(&crate::properties::norm_name(name)) != 0
    }

    /// `messageContext.add(framer, key, value)`: per-framer metadata (§9.1.2.2).
    pub fn add_framer_metadata(&mut self, framer: &str, key: &str, value: impl Into<String>) {
        self.framer_metadata
            .get_or_insert_with(Default::default)
            .insert((framer.to_string(), key.to_string()), value.into());
    }

    /// `messageContext.get(framer, key)`.
    pub fn framer_metadata(&self, framer: &str, key: &str) -> Option<&str> {
        self.framer_metadata
            .as_ref()?
            .get(&(framer.to_string(), key.to_string()))
            .map(String::as_str)
    }

    /// `GetRemoteEndpoint()`: who sent a received Message.
    pub fn remote_endpoint(&self) -> Option<&RemoteEndpoint> {
        self.endpoints.as_ref()?.remote.as_ref()
    }

    /// `GetLocalEndpoint()`: where a received Message arrived.
    pub fn local_endpoint(&self) -> Option<&LocalEndpoint> {
        self.endpoints.as_ref()?.local.as_deref()
    }

    /// Receive metadata: whether the Message arrived as 0-RTT early data (§9.3.3).
    pub fn is_early_data(&self) -> bool {
        self.early_data
    }

    /// Receive metadata: whether this is the peer's final Message (§9.3.3).
    pub fn is_final(&self) -> bool {
        self.final_
    }

    pub(crate) fn received(endpoints: Arc<Endpoints>, final_: bool) -> Self {
        let mut c = MessageContext::new();
        c.endpoints = Some(endpoints);
        c.final_ = final_;
        c
    }

    pub(crate) fn set_early_data(&mut self, e: bool) {
        self.early_data = e;
    }

    pub(crate) fn set_final(&mut self, f: bool) {
        self.final_ = f;
    }

    /// Fill every property not set on this context from the defaults.
    pub(crate) fn resolve(&self, defaults: &MessageProperties) -> MessageProperties {
        let mut p = defaults.clone();
        if self.explicit == 0 && self.properties == MessageProperties::default() {
            return p; // nothing set on this context (the usual case)
        }
        let me = &self.properties;
        let d = MessageProperties::default();
        // A property set through `add` (even to its default value), or written
        // directly to a value other than the default, wins over the defaults.
        macro_rules! take {
            ($($f:ident: $name:literal),* $(,)?) => {
                $( if self.explicit & explicit_bit($name) != 0 || me.$f != d.$f {
                    p.$f = me.$f;
                } )*
            };
        }
        take!(
            msg_lifetime: "msglifetime",
            msg_priority: "msgpriority",
            msg_ordered: "msgordered",
            safely_replayable: "safelyreplayable",
            final_: "final",
            msg_checksum_len: "msgchecksumlen",
            msg_reliable: "msgreliable",
            msg_capacity_profile: "msgcapacityprofile",
            no_fragmentation: "nofragmentation",
            no_segmentation: "nosegmentation",
        );
        p
    }
}

/// A Message received (RFC 9622 §9.3.2): `Received` or `ReceivedPartial`.
///
/// On a byte stream (TCP, TLS, QUIC and WebTransport streams)
/// a Message's data is a slice of the buffer its stack read into, not a
/// copy: it shares that buffer's memory (up to 64 KiB) with the Messages
/// read around it, and the memory is freed when the last of them is
/// dropped. To keep a small Message long after the Messages around it are
/// gone, keep a copy (`Bytes::copy_from_slice(event.data())`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiveEvent {
    /// A complete Message (`Received<messageData, messageContext>`).
    Received {
        /// The Message.
        data: Bytes,
        /// Its metadata.
        context: MessageContext,
    },
    /// Part of a Message (`ReceivedPartial<messageData, messageContext, endOfMessage>`).
    ReceivedPartial {
        /// This part.
        data: Bytes,
        /// The metadata; every part of one Message has the same context id.
        context: MessageContext,
        /// True on the last part of the Message.
        end_of_message: bool,
    },
}

impl ReceiveEvent {
    /// The data of either variant.
    pub fn data(&self) -> &[u8] {
        match self {
            ReceiveEvent::Received { data, .. } | ReceiveEvent::ReceivedPartial { data, .. } => {
                data
            }
        }
    }
    /// Take the data. It is [`Bytes`]: cheap to clone and to send on
    /// (`Connection::send` takes it without a copy); `Vec::from` or
    /// `to_vec()` gives a `Vec<u8>`.
    pub fn into_data(self) -> Bytes {
        match self {
            ReceiveEvent::Received { data, .. } | ReceiveEvent::ReceivedPartial { data, .. } => {
                data
            }
        }
    }
    /// The context of either variant.
    pub fn context(&self) -> &MessageContext {
        match self {
            ReceiveEvent::Received { context, .. }
            | ReceiveEvent::ReceivedPartial { context, .. } => context,
        }
    }
    /// True for a complete Message or the last part of one.
    pub fn is_end_of_message(&self) -> bool {
        match self {
            ReceiveEvent::Received { .. } => true,
            ReceiveEvent::ReceivedPartial { end_of_message, .. } => *end_of_message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_property_added_wins_over_the_defaults_even_at_its_default_value() {
        let defaults = MessageProperties {
            msg_priority: 50,
            msg_ordered: Some(false),
            ..MessageProperties::default()
        };
        let plain = MessageContext::new();
        assert_eq!(
            plain.resolve(&defaults),
            defaults,
            "nothing set: the defaults"
        );

        // msgPriority 100 is the RFC default, but it was asked for.
        let ctx = MessageContext::new()
            .with("msgPriority", 100u64)
            .unwrap()
            .with("MSG-ORDERED", true)
            .unwrap();
        assert!(ctx.is_set("msgPriority") && ctx.is_set("msgOrdered"));
        assert!(!ctx.is_set("msgLifetime") && !ctx.is_set("noSuchProperty"));
        let p = ctx.resolve(&defaults);
        assert_eq!((p.msg_priority, p.msg_ordered), (100, Some(true)));

        // Every Message Property (by its RFC name, RFC 9622 §9.1.3) is
        // remembered as set, each on its own.
        let all: [(&str, PropertyValue); 10] = [
            ("msgLifetime", PropertyValue::Integer(5)),
            ("msgPriority", PropertyValue::Integer(7)),
            ("msgOrdered", PropertyValue::Bool(false)),
            ("safelyReplayable", PropertyValue::Bool(true)),
            ("final", PropertyValue::Bool(true)),
            ("msgChecksumLen", PropertyValue::Integer(8)),
            ("msgReliable", PropertyValue::Bool(false)),
            (
                "msgCapacityProfile",
                PropertyValue::Text("scavenger".into()),
            ),
            ("noFragmentation", PropertyValue::Bool(true)),
            ("noSegmentation", PropertyValue::Bool(true)),
        ];
        for (i, (name, value)) in all.iter().enumerate() {
            let mut ctx = MessageContext::new();
            ctx.add(name, value.clone()).unwrap();
            for (j, (other, _)) in all.iter().enumerate() {
                assert_eq!(ctx.is_set(other), i == j, "{other} after adding {name}");
            }
        }
        let mut ctx = MessageContext::new();
        ctx.add("noSegmentation", true).unwrap();
        assert!(ctx.is_set("noSegmentation") && !ctx.is_set("noFragmentation"));
        assert!(ctx.add("msgReliabel", true).is_err(), "an unknown name");
    }

    #[test]
    fn a_taken_context_leaves_a_placeholder_without_a_fresh_id() {
        let a = MessageContext::new();
        let b = MessageContext::new();
        assert!(b.id() > a.id() && a.id() > 0);
        assert_eq!(MessageContext::placeholder().id(), 0);
    }

    /// Ids are taken in blocks per thread, and stay unique across threads
    /// and blocks.
    #[cfg(native)] // threads
    #[test]
    fn context_ids_are_unique_across_threads_and_blocks() {
        let ids = |n| {
            (0..n)
                .map(|_| MessageContext::new().id())
                .collect::<Vec<_>>()
        };
        let other = std::thread::spawn(move || ids(3 * ID_BLOCK as usize));
        let mut all = ids(3 * ID_BLOCK as usize);
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "increasing on one thread"
        );
        all.extend(other.join().unwrap());
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "no id given twice");
        assert!(all[0] > 0, "0 is the placeholder's");
    }
}
