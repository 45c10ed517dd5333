//! Body framing rules of RFC 9112 §6.3.

use super::{BodyFraming, Header, HeadError, ResponseHead};

pub(super) fn request_framing(headers: &[Header]) -> Result<BodyFraming, HeadError> {
    todo!("RFC 9112 §6.3 for requests: {headers:?}")
}

pub(super) fn response_framing(
    head: &ResponseHead,
    request_method: &str,
) -> Result<BodyFraming, HeadError> {
    todo!("RFC 9112 §6.3 for responses: {head:?} {request_method}")
}
