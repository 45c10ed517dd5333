//! protolab's notification hub.
//!
//! The principal type is [`Hub`]: channels, each with a bounded [`History`] of
//! [`Notification`]s numbered by monotonic offsets within an epoch, and a live fan-out to
//! subscribers. A subscriber that comes back with the [`Position`] it last saw gets exactly the
//! notifications it missed, or an explicit `recovered: false` when history no longer holds them.
//!
//! This crate does not parse HTTP or WebSocket bytes itself and owns no listener configuration
//! beyond what its endpoints need; the `protolab hub` command wires it to sockets.

pub mod broker;
mod history;
mod hub;
mod notification;
mod origin;
pub mod socketio;
pub mod story;

pub use history::{Delivery, History, HistoryLimits, Recovery, Since};
pub use hub::{ChannelInfo, Hub, HubConfig, HubError, Published, Subscription};
pub use notification::{
    ChannelName, InvalidField, Level, Notification, Position, Publication, PublicationLimits,
};
pub use origin::AllowedOrigins;
