//! The proxy's tracing events, captured for the tests that check them: its access log
//! (target `protolab::proxy::access`) and its backend state changes. One subscriber for the
//! whole test binary (tests run in parallel on many threads), so a test picks its own events
//! out by a field only it has, such as its backend's address.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a poisoned lock is a failed test"
)]

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer;

/// One captured event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) target: String,
    pub(crate) level: Level,
    /// Every field by name, `message` included, as its Display (or Debug) text.
    pub(crate) fields: BTreeMap<String, String>,
}

impl Event {
    pub(crate) fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

struct Capture;

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        EVENTS.lock().unwrap().push(Event {
            target: event.metadata().target().to_string(),
            level: *event.metadata().level(),
            fields,
        });
    }
}

/// Starts capturing (once per test binary).
pub(crate) fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let only_the_proxy = Targets::new()
            .with_target("protolab::proxy::access", Level::INFO)
            .with_target("protolab_server::proxy", Level::INFO);
        let subscriber = tracing_subscriber::registry().with(Capture.with_filter(only_the_proxy));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the test binary");
    });
}

/// Every event captured so far that `keep` selects.
pub(crate) fn events(keep: impl Fn(&Event) -> bool) -> Vec<Event> {
    EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|e| keep(e))
        .cloned()
        .collect()
}

/// The access-log lines of requests the proxy sent to `backend`, in order.
pub(crate) fn access_lines(backend: std::net::SocketAddr) -> Vec<Event> {
    let backend = backend.to_string();
    events(|e| e.target == "protolab::proxy::access" && e.field("backend") == backend)
}
