//! `Sec-WebSocket-Extensions` parsing (RFC 6455 §9.1) and permessage-deflate negotiation
//! (RFC 7692 §5, §7.1): the server's choice among offers, the client's offer and its check of
//! the server's answer.

use std::fmt;

use super::{
    ClientWindow, NegotiationError, Offer, Params, ServerConfig, EXTENSION_NAME, MAX_WINDOW_BITS,
    MIN_WINDOW_BITS,
};

/// One element of a `Sec-WebSocket-Extensions` list: `name; param; param=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Its parameters in order.
    pub params: Vec<ExtensionParam>,
}

/// One extension parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionParam {
    /// The parameter token.
    pub name: String,
    /// Its value with any quoting removed; `None` for a valueless parameter.
    pub value: Option<String>,
}

/// Parses one `Sec-WebSocket-Extensions` field value (RFC 6455 §9.1):
///
/// ```text
/// extension-list  = 1#extension
/// extension       = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
///
/// Optional whitespace is allowed around `,`, `;` and `=`, and empty list elements are
/// skipped (RFC 9110 §5.6.1). A quoted value must be a token once unquoted (RFC 6455 §9.1).
pub fn parse_extensions(value: &[u8]) -> Result<Vec<Extension>, NegotiationError> {
    let mut p = Cursor { s: value, at: 0 };
    let mut out = Vec::new();
    loop {
        p.skip_ows();
        if p.eat(b',') {
            continue;
        }
        if p.at_end() {
            return Ok(out);
        }
        let name = p.token("an extension name")?;
        let mut params = Vec::new();
        loop {
            p.skip_ows();
            if !p.eat(b';') {
                break;
            }
            p.skip_ows();
            let name = p.token("a parameter name")?;
            p.skip_ows();
            let value = if p.eat(b'=') {
                p.skip_ows();
                Some(if p.peek() == Some(b'"') {
                    p.quoted()?
                } else {
                    p.token("a parameter value")?
                })
            } else {
                None
            };
            params.push(ExtensionParam { name, value });
        }
        out.push(Extension { name, params });
        p.skip_ows();
        if !p.at_end() && !p.eat(b',') {
            return Err(p.error("`,`, `;` or the end"));
        }
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn error(&self, what: &'static str) -> NegotiationError {
        NegotiationError::Syntax { at: self.at, what }
    }

    fn token(&mut self, what: &'static str) -> Result<String, NegotiationError> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.error(what));
        }
        Ok(ascii(&self.s[start..self.at]))
    }

    /// A quoted-string (RFC 9110 §5.6.4) whose unescaped content is a token.
    fn quoted(&mut self) -> Result<String, NegotiationError> {
        self.at += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("a closing quote")),
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(b) = self.peek() else {
                        return Err(self.error("a character after `\\`"));
                    };
                    value.push(b);
                    self.at += 1;
                }
                Some(b) => {
                    value.push(b);
                    self.at += 1;
                }
            }
        }
        if value.is_empty() || !value.iter().copied().all(is_tchar) {
            return Err(self.error("a token inside the quotes (RFC 6455 §9.1)"));
        }
        Ok(ascii(&value))
    }
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Token bytes are ASCII, so this never replaces anything.
fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn is_deflate(ext: &Extension) -> bool {
    ext.name.eq_ignore_ascii_case(EXTENSION_NAME)
}

/// Reads permessage-deflate's parameters into an [`Offer`]-shaped value. In a response
/// `client_max_window_bits` must carry a value (RFC 7692 §7.1.2.2).
fn read_params(ext: &Extension, response: bool) -> Result<Offer, NegotiationError> {
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for param in &ext.params {
        let (index, name) = match param.name.as_str() {
            "server_no_context_takeover" => (0, "server_no_context_takeover"),
            "client_no_context_takeover" => (1, "client_no_context_takeover"),
            "server_max_window_bits" => (2, "server_max_window_bits"),
            "client_max_window_bits" => (3, "client_max_window_bits"),
            other => return Err(NegotiationError::UnknownParameter(other.to_owned())),
        };
        // RFC 7692 §7: an offer or response with a parameter twice is invalid.
        if std::mem::replace(&mut seen[index], true) {
            return Err(NegotiationError::DuplicateParameter(name));
        }
        let bad = || NegotiationError::BadValue {
            name,
            value: param.value.clone().unwrap_or_default(),
        };
        match index {
            // §7.1.1: the context-takeover parameters have no value.
            0 | 1 if param.value.is_some() => return Err(bad()),
            0 => offer.server_no_context_takeover = true,
            1 => offer.client_no_context_takeover = true,
            // §7.1.2.1: server_max_window_bits always has a value.
            2 => {
                let bits = param
                    .value
                    .as_deref()
                    .and_then(window_bits)
                    .ok_or_else(bad)?;
                offer.server_max_window_bits = Some(bits);
            }
            _ => {
                offer.client_max_window_bits = match param.value.as_deref() {
                    None if response => return Err(bad()),
                    None => ClientWindow::Supported,
                    Some(v) => ClientWindow::Max(window_bits(v).ok_or_else(bad)?),
                };
            }
        }
    }
    Ok(offer)
}

/// RFC 7692 §7.1.2.1: `%x38-39 / "1" %x30-35`, i.e. 8 to 15 with no leading zero or sign.
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse()
        .ok()
        .filter(|b| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(b))
}

/// A server's acceptance of one offer: the agreed parameters and the response element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// What both sides now use.
    pub params: Params,
    /// The `Sec-WebSocket-Extensions` value for the 101 response, e.g.
    /// `permessage-deflate; client_max_window_bits=15`.
    pub response: String,
}

/// The server side of RFC 7692 §5: walks the offers in the client's order of preference and
/// accepts the first valid one that `config` allows. `field_values` are the request's
/// `Sec-WebSocket-Extensions` values (any number of fields, or their comma-split elements).
/// `None` means permessage-deflate is declined: answer without it and send uncompressed.
///
/// A field value that does not parse declines every offer in it; an offer with an unknown,
/// duplicate or out-of-range parameter is skipped (RFC 7692 §7: "a server MUST decline" such
/// an offer), as is one whose client may not be limited to `config.client_max_window_bits`.
pub fn negotiate<'a>(
    field_values: impl IntoIterator<Item = &'a [u8]>,
    config: &ServerConfig,
) -> Option<Accepted> {
    field_values
        .into_iter()
        .filter_map(|value| parse_extensions(value).ok())
        .flatten()
        .filter(is_deflate)
        .filter_map(|ext| read_params(&ext, false).ok())
        .find_map(|offer| accept(&offer, config))
}

fn accept(offer: &Offer, config: &ServerConfig) -> Option<Accepted> {
    let server_bits = config
        .server_max_window_bits
        .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    let client_limit = config
        .client_max_window_bits
        .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    let client_max_window_bits = match offer.client_max_window_bits {
        // §7.1.2.2: without the parameter the response may not limit the client.
        ClientWindow::Absent if client_limit < MAX_WINDOW_BITS => return None,
        ClientWindow::Absent => MAX_WINDOW_BITS,
        ClientWindow::Supported => client_limit,
        ClientWindow::Max(offered) => offered.min(client_limit),
    };
    let params = Params {
        // §7.1.1.1: an accepted request for server_no_context_takeover MUST be answered.
        server_no_context_takeover: config.server_no_context_takeover
            || offer.server_no_context_takeover,
        // A client that announced it resets anyway is told so back; harmless and explicit.
        client_no_context_takeover: config.client_no_context_takeover
            || offer.client_no_context_takeover,
        // §7.1.2.1: at most what the client asked for.
        server_max_window_bits: offer
            .server_max_window_bits
            .map_or(server_bits, |asked| asked.min(server_bits)),
        client_max_window_bits,
    };
    let mut response = Response::default();
    response.flag(
        "server_no_context_takeover",
        params.server_no_context_takeover,
    );
    response.flag(
        "client_no_context_takeover",
        params.client_no_context_takeover,
    );
    if offer.server_max_window_bits.is_some() || params.server_max_window_bits < MAX_WINDOW_BITS {
        response.bits("server_max_window_bits", params.server_max_window_bits);
    }
    if offer.client_max_window_bits != ClientWindow::Absent
        && (params.client_max_window_bits < MAX_WINDOW_BITS
            || matches!(offer.client_max_window_bits, ClientWindow::Max(_)))
    {
        response.bits("client_max_window_bits", params.client_max_window_bits);
    }
    Some(Accepted {
        params,
        response: response.0,
    })
}

/// Builds `permessage-deflate; a; b=N`.
struct Response(String);

impl Default for Response {
    fn default() -> Self {
        Self(EXTENSION_NAME.to_owned())
    }
}

impl Response {
    fn flag(&mut self, name: &str, on: bool) {
        if on {
            self.0.push_str("; ");
            self.0.push_str(name);
        }
    }

    fn bits(&mut self, name: &str, bits: u8) {
        self.0.push_str("; ");
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&bits.to_string());
    }
}

impl fmt::Display for Offer {
    /// The offer as a `Sec-WebSocket-Extensions` element, e.g.
    /// `permessage-deflate; client_max_window_bits`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXTENSION_NAME)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={bits}")?;
        }
        match self.client_max_window_bits {
            ClientWindow::Absent => Ok(()),
            ClientWindow::Supported => f.write_str("; client_max_window_bits"),
            ClientWindow::Max(bits) => write!(f, "; client_max_window_bits={bits}"),
        }
    }
}

impl Offer {
    /// What browsers offer (Chromium: `permessage-deflate; client_max_window_bits`): context
    /// takeover both ways, and the server may limit the client's window.
    pub fn browser() -> Self {
        Self {
            client_max_window_bits: ClientWindow::Supported,
            ..Self::default()
        }
    }

    /// Checks the server's `Sec-WebSocket-Extensions` values against this offer (RFC 7692 §5,
    /// §7.1) and returns the agreed parameters; `Ok(None)` when the server declined (no such
    /// field, or empty). Any error means the client must fail the connection: an extension
    /// that was not offered, permessage-deflate twice, an invalid parameter, or a window or
    /// takeover setting the offer does not allow.
    pub fn accept_response<'a>(
        &self,
        field_values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<Params>, NegotiationError> {
        let Some(answer) = response_params(field_values)? else {
            return Ok(None);
        };
        // §7.1.1.1: a server accepting server_no_context_takeover MUST say so.
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err(NegotiationError::Missing("server_no_context_takeover"));
        }
        // §7.1.2.1: an offered server_max_window_bits is answered with it, at most as large.
        let server_max_window_bits =
            match (self.server_max_window_bits, answer.server_max_window_bits) {
                (Some(_), None) => return Err(NegotiationError::Missing("server_max_window_bits")),
                (Some(offered), Some(bits)) if bits > offered => {
                    return Err(NegotiationError::NotAllowed {
                        name: "server_max_window_bits",
                        value: bits,
                    })
                }
                (_, bits) => bits.unwrap_or(MAX_WINDOW_BITS),
            };
        // §7.1.2.2: the client's window may be limited only if the offer said so; an offered
        // value is a limit the client keeps to whatever the server answers.
        let client_max_window_bits =
            match (self.client_max_window_bits, answer.client_max_window_bits) {
                (ClientWindow::Absent, ClientWindow::Max(bits)) => {
                    return Err(NegotiationError::NotAllowed {
                        name: "client_max_window_bits",
                        value: bits,
                    })
                }
                (ClientWindow::Max(offered), ClientWindow::Max(bits)) => offered.min(bits),
                (ClientWindow::Max(offered), _) => offered,
                (_, ClientWindow::Max(bits)) => bits,
                _ => MAX_WINDOW_BITS,
            };
        Ok(Some(Params {
            server_no_context_takeover: answer.server_no_context_takeover,
            // §7.1.1.2: a client that offered it keeps its word even if not answered.
            client_no_context_takeover: answer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        }))
    }
}

/// The server's permessage-deflate response read on its own, as [`Offer::accept_response`]
/// reads it but without an offer to check it against: for dissectors of captured handshakes.
/// `Ok(None)` when the response has no permessage-deflate.
pub fn read_response<'a>(
    field_values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Params>, NegotiationError> {
    Ok(response_params(field_values)?.map(|answer| Params {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover,
        server_max_window_bits: answer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        client_max_window_bits: match answer.client_max_window_bits {
            ClientWindow::Max(bits) => bits,
            _ => MAX_WINDOW_BITS,
        },
    }))
}

/// The one permessage-deflate element of a response, its parameters read.
fn response_params<'a>(
    field_values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Offer>, NegotiationError> {
    let mut found = None;
    for value in field_values {
        for ext in parse_extensions(value)? {
            // RFC 6455 §4.1: an extension the client did not ask for fails the connection.
            if !is_deflate(&ext) {
                return Err(NegotiationError::NotOffered(ext.name));
            }
            if found.is_some() {
                return Err(NegotiationError::Repeated);
            }
            found = Some(read_params(&ext, true)?);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
