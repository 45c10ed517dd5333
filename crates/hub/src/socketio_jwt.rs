//! Subscriber JWTs on the socket.io endpoint: [`SocketIoConfig::with_jwt`], apart from
//! socketio.rs so the endpoint itself knows only its two hooks ([`crate::socketio::Authorize`],
//! [`crate::socketio::TokenTimeLeft`]).

use std::sync::Arc;

use crate::auth::JwtVerifier;
use crate::notification::ChannelName;
use crate::socketio::SocketIoConfig;

impl SocketIoConfig {
    /// Subscribing checked against JWTs by `verifier`: a join needs a valid token that allows
    /// the channel (401 without one, 403 for another channel), and a socket is disconnected
    /// when its token expires.
    pub fn with_jwt(mut self, verifier: JwtVerifier) -> Self {
        let check = verifier.clone();
        let authorize = move |token: Option<&str>, channel: &ChannelName| {
            let token = token.ok_or_else(|| {
                (
                    401,
                    "no token: pass a JWT in the socket.io auth payload's `token` or as ?token="
                        .to_owned(),
                )
            })?;
            let grant = check.verify(token).map_err(|refused| (401, refused.0))?;
            if grant.allows(channel) {
                Ok(())
            } else {
                Err((403, format!("token does not allow channel {channel}")))
            }
        };
        let time_left = move |token: &str| verifier.verify(token).ok()?.time_left();
        self.authorize = Some(Arc::new(authorize));
        self.token_time_left = Some(Arc::new(time_left));
        self
    }
}
