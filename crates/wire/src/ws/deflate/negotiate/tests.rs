//! Unit tests of the extension grammar and both sides of the negotiation.

use super::*;

fn ext(name: &str, params: &[(&str, Option<&str>)]) -> Extension {
    Extension {
        name: name.into(),
        params: params
            .iter()
            .map(|(n, v)| ExtensionParam {
                name: (*n).into(),
                value: v.map(Into::into),
            })
            .collect(),
    }
}

#[test]
fn grammar() {
    assert_eq!(parse_extensions(b""), Ok(vec![]));
    assert_eq!(parse_extensions(b" , ,"), Ok(vec![]));
    assert_eq!(
        parse_extensions(b"permessage-deflate; client_max_window_bits ,x-foo;a=1 ; b = \"1\\0\",y"),
        Ok(vec![
            ext("permessage-deflate", &[("client_max_window_bits", None)]),
            ext("x-foo", &[("a", Some("1")), ("b", Some("10"))]),
            ext("y", &[]),
        ])
    );
    for (bad, at) in [
        (&b";x"[..], 0),
        (b"a;", 2),
        (b"a;=1", 2),
        (b"a; b=", 5),
        (b"a b", 2),
        (b"a; b=\"1", 7),
        (b"a; b=\"\"", 7),
        (b"a; b=\"1 0\"", 10),
        (b"a; b=\"1\\", 8),
        (b"a\xff", 1),
    ] {
        assert!(
            matches!(parse_extensions(bad), Err(NegotiationError::Syntax { at: a, .. }) if a == at),
            "{:?} -> {:?}",
            String::from_utf8_lossy(bad),
            parse_extensions(bad)
        );
    }
}

#[test]
fn offer_parameters() {
    let one = |s: &str| {
        let exts = parse_extensions(s.as_bytes()).unwrap();
        read_params(&exts[0], false)
    };
    assert_eq!(one("permessage-deflate"), Ok(Offer::default()));
    assert_eq!(
        one("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"),
        Ok(Offer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: ClientWindow::Supported,
        })
    );
    assert_eq!(
        one("permessage-deflate; client_max_window_bits=\"8\""),
        Ok(Offer {
            client_max_window_bits: ClientWindow::Max(8),
            ..Offer::default()
        })
    );
    use NegotiationError::*;
    for (s, want) in [
        ("permessage-deflate; x", UnknownParameter("x".into())),
        (
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            DuplicateParameter("client_no_context_takeover"),
        ),
        (
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            DuplicateParameter("server_max_window_bits"),
        ),
        (
            "permessage-deflate; server_max_window_bits",
            BadValue {
                name: "server_max_window_bits",
                value: String::new(),
            },
        ),
        (
            "permessage-deflate; server_no_context_takeover=1",
            BadValue {
                name: "server_no_context_takeover",
                value: "1".into(),
            },
        ),
    ] {
        assert_eq!(one(s), Err(want), "{s}");
    }
    for v in ["7", "16", "08", "+9", "9.0", "100", "1a"] {
        let s = format!("permessage-deflate; client_max_window_bits={v}");
        assert!(matches!(one(&s), Err(BadValue { .. })), "{s}");
    }
    // A response's client_max_window_bits must carry a value.
    let exts = parse_extensions(b"permessage-deflate; client_max_window_bits").unwrap();
    assert!(matches!(read_params(&exts[0], true), Err(BadValue { .. })));
}

fn server(request: &str, config: &ServerConfig) -> Option<Accepted> {
    negotiate([request.as_bytes()], config)
}

#[test]
fn server_takes_the_first_acceptable_offer() {
    let config = ServerConfig::default();
    // Chromium's offer.
    let a = server("permessage-deflate; client_max_window_bits", &config).unwrap();
    assert_eq!(a.params, Params::default());
    assert_eq!(a.response, "permessage-deflate");
    // Invalid offers are skipped, not fatal; unknown extensions ignored.
    let a = server(
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, \
         permessage-deflate; foo, permessage-deflate; server_max_window_bits=10; server_no_context_takeover, \
         permessage-deflate",
        &config,
    )
    .unwrap();
    assert_eq!(
        a.response,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
    );
    assert_eq!(a.params.server_max_window_bits, 10);
    assert!(a.params.server_no_context_takeover);
    // Nothing acceptable: declined.
    assert_eq!(server("permessage-deflate; x, x-other", &config), None);
    assert_eq!(server("", &config), None);
    // A field that does not parse declines what it holds; other fields still count.
    assert_eq!(
        negotiate(
            [&b"permessage-deflate; a=\"1"[..], b"permessage-deflate"],
            &config
        )
        .map(|a| a.response),
        Some("permessage-deflate".into())
    );
}

#[test]
fn server_policy() {
    let config = ServerConfig {
        server_max_window_bits: 12,
        client_max_window_bits: 10,
        server_no_context_takeover: false,
        client_no_context_takeover: true,
    };
    // The client may not be limited: declined.
    assert_eq!(server("permessage-deflate", &config), None);
    let a = server("permessage-deflate; client_max_window_bits", &config).unwrap();
    assert_eq!(
        a.params,
        Params {
            server_no_context_takeover: false,
            client_no_context_takeover: true,
            server_max_window_bits: 12,
            client_max_window_bits: 10,
        }
    );
    assert_eq!(
        a.response,
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=10"
    );
    // A client's smaller values win; a client_max_window_bits value is answered.
    let a = server(
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8",
        &config,
    )
    .unwrap();
    assert_eq!(
        (
            a.params.server_max_window_bits,
            a.params.client_max_window_bits
        ),
        (9, 8)
    );
    let a = server(
        "permessage-deflate; client_max_window_bits=15",
        &ServerConfig::default(),
    )
    .unwrap();
    assert_eq!(a.response, "permessage-deflate; client_max_window_bits=15");
    // The 8-bit server window is accepted (the Deflater writes stored blocks for it).
    let a = server(
        "permessage-deflate; server_max_window_bits=8",
        &ServerConfig::default(),
    )
    .unwrap();
    assert_eq!(a.response, "permessage-deflate; server_max_window_bits=8");
}

fn client(offer: &Offer, response: &str) -> Result<Option<Params>, NegotiationError> {
    offer.accept_response([response.as_bytes()])
}

#[test]
fn client_offer_and_response() {
    let offer = Offer::browser();
    assert_eq!(
        offer.to_string(),
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(offer.accept_response([]), Ok(None));
    assert_eq!(client(&offer, ""), Ok(None));
    assert_eq!(
        client(&offer, "permessage-deflate"),
        Ok(Some(Params::default()))
    );
    assert_eq!(
        client(
            &offer,
            "permessage-deflate; client_max_window_bits=9; client_no_context_takeover; server_max_window_bits=10"
        ),
        Ok(Some(Params {
            server_no_context_takeover: false,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 9,
        }))
    );
    use NegotiationError::*;
    for (offer, response, want) in [
        (Offer::browser(), "x-foo", NotOffered("x-foo".into())),
        (
            Offer::browser(),
            "permessage-deflate, permessage-deflate",
            Repeated,
        ),
        (
            Offer::default(),
            "permessage-deflate; client_max_window_bits=10",
            NotAllowed {
                name: "client_max_window_bits",
                value: 10,
            },
        ),
        (
            Offer {
                server_no_context_takeover: true,
                ..Offer::default()
            },
            "permessage-deflate",
            Missing("server_no_context_takeover"),
        ),
        (
            Offer {
                server_max_window_bits: Some(10),
                ..Offer::default()
            },
            "permessage-deflate",
            Missing("server_max_window_bits"),
        ),
        (
            Offer {
                server_max_window_bits: Some(10),
                ..Offer::default()
            },
            "permessage-deflate; server_max_window_bits=11",
            NotAllowed {
                name: "server_max_window_bits",
                value: 11,
            },
        ),
        (
            Offer::browser(),
            "permessage-deflate; client_max_window_bits",
            BadValue {
                name: "client_max_window_bits",
                value: String::new(),
            },
        ),
        (
            Offer::browser(),
            "permessage-deflate; mystery",
            UnknownParameter("mystery".into()),
        ),
    ] {
        assert_eq!(client(&offer, response), Err(want), "{offer} / {response}");
    }
    // An offered client window is kept even when the server answers a larger one.
    let offer = Offer {
        client_max_window_bits: ClientWindow::Max(10),
        client_no_context_takeover: true,
        ..Offer::default()
    };
    let p = client(&offer, "permessage-deflate; client_max_window_bits=12")
        .unwrap()
        .unwrap();
    assert_eq!(p.client_max_window_bits, 10);
    assert!(p.client_no_context_takeover);
}

#[test]
fn every_offer_the_server_accepts_passes_the_client_check() {
    let configs = [
        ServerConfig::default(),
        ServerConfig {
            server_max_window_bits: 9,
            client_max_window_bits: 11,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
        },
    ];
    let windows = [
        ClientWindow::Absent,
        ClientWindow::Supported,
        ClientWindow::Max(8),
        ClientWindow::Max(15),
    ];
    for config in &configs {
        for client_max_window_bits in windows {
            for server_max_window_bits in [None, Some(8), Some(12), Some(15)] {
                for flags in 0..4 {
                    let offer = Offer {
                        server_no_context_takeover: flags & 1 != 0,
                        client_no_context_takeover: flags & 2 != 0,
                        server_max_window_bits,
                        client_max_window_bits,
                    };
                    let Some(a) = server(&offer.to_string(), config) else {
                        assert_eq!(client_max_window_bits, ClientWindow::Absent);
                        continue;
                    };
                    let p = client(&offer, &a.response).unwrap().unwrap();
                    assert_eq!(p, a.params, "{offer} -> {}", a.response);
                    assert_eq!(read_response([a.response.as_bytes()]), Ok(Some(p)));
                }
            }
        }
    }
}
