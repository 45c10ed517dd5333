//! The demo pages, each told what the lab knows and a browser cannot see: the TLS version,
//! cipher suite and ALPN protocol of the connection that fetched it (no JavaScript API gives
//! them), its HTTP version, and where the lab's other apps listen.

use protolab_tls::stream::{suite_name, Negotiated};
use serde_json::json;

use super::Response;

const HTTP_PAGE: &str = include_str!("pages/http.html");
const WS_PAGE: &str = include_str!("pages/ws.html");
const SSE_PAGE: &str = include_str!("pages/sse.html");
/// Shared by the pages: shows the facts and the links.
const LAB_SCRIPT: &str = include_str!("pages/lab.js");

/// Where each page takes the facts: replaced by a JSON `<script>` block.
const FACTS_MARK: &str = "<!--lab facts-->";

/// An SVG icon, for `/favicon.ico` and the pages' `<link rel=icon>`: a browser asks for one
/// on every page, and a 404 in every console hides the errors that matter.
pub(super) const FAVICON: &[u8] = b"<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#2b59c3\"/>\
<path d=\"M3 5h10M3 8h7M3 11h10\" stroke=\"#fff\" stroke-width=\"1.6\" stroke-linecap=\"round\"/></svg>";

/// The connection a request came on, as the pages describe it.
pub(crate) struct Connection<'a> {
    /// `HTTP/1.1` or `HTTP/2`.
    pub(crate) http: &'static str,
    /// What the TLS handshake settled, on a TLS connection.
    pub(crate) tls: Option<&'a Negotiated>,
    /// The lab's apps as JSON, built once at start ([`apps_json`]).
    pub(crate) apps: &'a str,
}

/// Which demo page.
#[derive(Debug, Clone, Copy)]
pub(super) enum Page {
    Http,
    Ws,
    Sse,
}

/// The page with the facts of `conn` in it.
pub(super) fn render(page: Page, conn: &Connection<'_>) -> Response {
    let template = match page {
        Page::Http => HTTP_PAGE,
        Page::Ws => WS_PAGE,
        Page::Sse => SSE_PAGE,
    };
    let facts = format!(
        "<script id=\"lab-facts\" type=\"application/json\">{}</script><script>{LAB_SCRIPT}</script>",
        script_safe(&facts_json(conn))
    );
    let body = template.replacen(FACTS_MARK, &facts, 1);
    Response::new(200, "text/html; charset=utf-8", body.into_bytes())
}

fn facts_json(conn: &Connection<'_>) -> String {
    let tls = conn.tls.map(|n| {
        json!({
            "version": protolab_wire::tls::version_name(u16::from(n.version)),
            "cipher": suite_name(n.suite),
            "alpn": n.alpn.as_deref().map(String::from_utf8_lossy),
        })
    });
    // `apps` is JSON already, built once at start: spliced in rather than parsed again.
    format!(
        r#"{{"http":{},"tls":{},"apps":{}}}"#,
        json!(conn.http),
        json!(tls),
        conn.apps
    )
}

/// JSON inside `<script>` ends at the first `</`; `<` escaped as `\u003c` cannot end it.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// The lab's apps that have a page, for the pages' links: name, scheme and port (the page
/// puts them after its own host name, so the links work under whatever name it was opened).
pub(crate) fn apps_json<'a>(apps: impl IntoIterator<Item = (&'a str, bool, u16)>) -> String {
    let list: Vec<serde_json::Value> = apps
        .into_iter()
        .map(|(name, tls, port)| {
            json!({ "name": name, "scheme": if tls { "https" } else { "http" }, "port": port })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

#[cfg(test)]
mod tests {
    use protolab_tls::rustls::{CipherSuite, ProtocolVersion};

    use super::*;

    fn facts(page: Page, conn: &Connection<'_>) -> serde_json::Value {
        let resp = render(page, conn);
        let html = String::from_utf8(resp.body.to_vec()).unwrap();
        assert!(!html.contains(FACTS_MARK), "the mark stayed in the page");
        let start = html
            .find("<script id=\"lab-facts\" type=\"application/json\">")
            .unwrap();
        let json = &html[start..];
        let json = &json[json.find('>').unwrap() + 1..json.find("</script>").unwrap()];
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_page_carries_its_connection_and_the_apps() {
        let apps = apps_json([("http", false, 3000), ("wss", true, 3003)]);
        let negotiated = Negotiated {
            version: ProtocolVersion::TLSv1_3,
            suite: CipherSuite::TLS13_AES_256_GCM_SHA384,
            alpn: Some(b"http/1.1".to_vec()),
        };
        let tls = Connection {
            http: "HTTP/1.1",
            tls: Some(&negotiated),
            apps: &apps,
        };
        for page in [Page::Http, Page::Ws, Page::Sse] {
            let f = facts(page, &tls);
            assert_eq!(f["tls"]["version"], "TLS 1.3", "{page:?}: {f}");
            assert_eq!(f["tls"]["cipher"], "TLS_AES_256_GCM_SHA384");
            assert_eq!(f["tls"]["alpn"], "http/1.1");
            assert_eq!(f["apps"][1]["scheme"], "https");
            assert_eq!(f["apps"][1]["port"], 3003);
        }
        let plain = Connection {
            http: "HTTP/2",
            tls: None,
            apps: &apps,
        };
        let f = facts(Page::Ws, &plain);
        assert!(f["tls"].is_null(), "{f}");
        assert_eq!(f["http"], "HTTP/2");
    }

    #[test]
    fn nothing_in_the_facts_can_end_their_script() {
        let apps = apps_json([("</script><script>alert(1)", false, 1)]);
        let conn = Connection {
            http: "HTTP/1.1",
            tls: None,
            apps: &apps,
        };
        let html = String::from_utf8(render(Page::Http, &conn).body.to_vec()).unwrap();
        assert!(!html.contains("</script><script>alert"), "{html}");
        assert_eq!(
            facts(Page::Http, &conn)["apps"][0]["name"],
            "</script><script>alert(1)"
        );
    }
}
