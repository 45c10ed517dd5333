//! protolab's notification hub.
//!
//! The principal type is [`Hub`]: channels, each with a bounded [`History`] of
//! [`Notification`]s numbered by monotonic offsets within an epoch, and a live fan-out to
//! subscribers. A subscriber that comes back with the [`Position`] it last saw gets exactly the
//! notifications it missed, or an explicit `recovered: false` when history no longer holds them.
//!
//! Around it: the HTTP publish API ([`api`]), WebSocket ([`ws`]) and SSE ([`sse`]) subscriber
//! connections, auth ([`auth`]), metrics, the browser pages ([`gui`]), all on one axum router ([`router()`]) that
//! [`serve`] puts on a listener. Parsers of network input are plain functions
//! ([`protocol::parse_command`], [`sse::parse_last_event_id`], [`api::parse_history_query`]...)
//! so they can be fuzzed without sockets.

pub mod api;
pub mod app;
pub mod auth;
pub mod broker;
pub mod client;
pub mod error;
pub mod gui;
mod history;
mod hub;
pub mod metrics;
mod notification;
pub mod protocol;
mod router;
mod serve;
pub mod socketio;
mod socketio_jwt;
pub mod sse;
pub mod story;
pub mod ws;

pub use history::{Delivery, History, HistoryLimits, Recovery, Since};
pub use hub::{ChannelInfo, Hub, HubConfig, HubError, Published, Subscription};
pub use notification::{
    ChannelName, InvalidField, Level, Notification, Position, Publication, PublicationLimits,
};
pub use router::router;
pub use serve::{serve, ServeOptions, Server};
