//! The outcomes of sends and receives (RFC 9622 §9.2.2, §9.3.2, §11):
//! `Sent`, `Expired`, `SendError`, `ReceiveError`, and the send future that
//! yields exactly one of them.

#![allow(clippy::result_large_err)]

use super::*;

/// `Sent<messageContext>`: the Message was handed to the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The context the Message was sent with.
    pub context: MessageContext,
    /// Position of this send call among all send calls on the Connection (from 0).
    pub sequence: u64,
}

/// The outcome of one [`Connection::send`]: `Sent`, `Expired` or
/// `SendError`, exactly once. When `send` returned, the Message was already
/// checked, and either refused (the answer is here) or queued or handed to
/// the stack; dropping this future does not take it back.
#[must_use = "the Message is sent either way; await this to learn whether it went out"]
pub struct SendFuture {
    pub(super) state: SendState,
}

pub(super) enum SendState {
    /// Answered when `send` was called (the stack took the Message at once,
    /// or it was refused); `None` once the answer was taken.
    Done(Option<Result<Sent, SendFailure>>),
    /// Waiting for the stack.
    Waiting(runtime::BoxFuture<'static, Result<Sent, SendFailure>>),
}

impl SendFuture {
    /// The outcome, if it was known when `send` returned (the stack took
    /// the Message at once, or it was refused), without awaiting; else
    /// (`Err`) the future back, to await. Call it on a fresh future: once
    /// polled to completion, a future has given its answer away.
    pub fn answer_now(self) -> Result<Result<Sent, SendFailure>, SendFuture> {
        match self.state {
            SendState::Done(Some(r)) => Ok(r),
            state => Err(SendFuture { state }),
        }
    }
}

impl Future for SendFuture {
    type Output = Result<Sent, SendFailure>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.state {
            SendState::Done(r) => {
                std::task::Poll::Ready(r.take().expect("SendFuture polled after it completed"))
            }
            SendState::Waiting(f) => f.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for SendFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.state {
            SendState::Done(Some(_)) => "SendFuture(answered)",
            SendState::Done(None) => "SendFuture(taken)",
            SendState::Waiting(_) => "SendFuture(waiting for the stack)",
        })
    }
}

/// `Expired<messageContext>` or `SendError<messageContext, reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// `Expired`: msgLifetime passed before the Message could be sent.
    #[error("Expired: the message's msgLifetime passed before it could be sent")]
    Expired {
        /// The context of the Message.
        context: MessageContext,
    },
    /// `SendError`: the Message could not be sent.
    #[error("SendError: {error}")]
    SendError {
        /// The context of the Message.
        context: MessageContext,
        /// Why.
        error: Error,
    },
}

impl SendFailure {
    /// The error reason (`Timeout` for Expired).
    pub fn reason(&self) -> ErrorReason {
        match self {
            SendFailure::Expired { .. } => ErrorReason::Timeout,
            SendFailure::SendError { error, .. } => error.reason,
        }
    }
}

/// `ReceiveError<messageContext, reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ReceiveError: {error}")]
pub struct ReceiveError {
    /// The context of the Message being received, if one had started.
    pub context: Option<MessageContext>,
    /// Why.
    pub error: Error,
}

pub(super) type SendResult = Result<Sent, SendFailure>;

/// The outcome of send call `seq` with `context`.
pub(super) fn outcome_of(
    seq: u64,
    context: MessageContext,
    r: Result<(), SendFailureKind>,
) -> SendResult {
    match r {
        Ok(()) => Ok(Sent {
            context,
            sequence: seq,
        }),
        Err(SendFailureKind::Expired) => Err(SendFailure::Expired { context }),
        Err(SendFailureKind::Error(error)) => Err(SendFailure::SendError { context, error }),
    }
}

#[derive(Clone)]
pub(super) enum SendFailureKind {
    Expired,
    Error(Error),
}

pub(super) fn dropped() -> SendFailure {
    SendFailure::SendError {
        context: MessageContext::new(),
        error: Error::new(
            ErrorReason::ConnectionAborted,
            "the Connection went away before the Message was sent",
        ),
    }
}
