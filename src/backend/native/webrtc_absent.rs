//! The WebRTC peer in a build without the `webrtc` feature: there is none.
//! Rendezvous refuses before it gets here (`RENDEZVOUS` is false), so
//! these types are never made; their constructors say why if called.

use super::{BackendListener, Transport};
use crate::backend::SocketOptions;
use crate::rendezvous::DataChannelOptions;
use crate::security::SecurityParameters;
use std::io;

fn absent() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the webrtc stack is not in this build (postsocket's cargo feature `webrtc`)",
    )
}

/// A WebRTC offer: none without the feature.
pub(crate) enum WebrtcOffer {}

impl WebrtcOffer {
    pub(crate) async fn create(
        _: &SocketOptions,
        _: &DataChannelOptions,
    ) -> io::Result<WebrtcOffer> {
        Err(absent())
    }

    pub(crate) fn sdp(&self) -> String {
        match *self {}
    }

    pub(crate) async fn accept_answer(self, _: &str) -> io::Result<WebrtcPeer> {
        match self {}
    }
}

/// A WebRTC peer connection: none without the feature.
pub(crate) enum WebrtcPeer {}

impl WebrtcPeer {
    pub(crate) async fn answer(_: &str, _: &SocketOptions) -> io::Result<(WebrtcPeer, String)> {
        Err(absent())
    }

    pub(crate) async fn first_channel(&self) -> io::Result<Transport> {
        match *self {}
    }

    pub(crate) fn into_incoming(self) -> BackendListener {
        match self {}
    }
}

/// HTTP signaling carries WebRTC offers: none without the feature.
pub(crate) async fn http_post_json(
    _: &str,
    _: String,
    _: &SecurityParameters,
) -> io::Result<String> {
    Err(absent())
}
