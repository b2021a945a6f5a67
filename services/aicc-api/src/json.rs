//! The JSON body extractor every route uses. Unlike `web::Json` it tells each
//! kind of bad body apart with its own code: wrong media type (415), too large
//! (413), invalid UTF-8, too deeply nested or not JSON (400), and well-formed
//! JSON of the wrong shape (422, with the serde message naming the field).

use std::future::Future;
use std::pin::Pin;

use actix_web::http::{header, StatusCode};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::AppState;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let limits = &state.settings.limits;
            let is_json = content_type
                .as_deref()
                .map(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
                .unwrap_or(false);
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body must be JSON with Content-Type: application/json",
                ));
            }
            let body = read_limited(&mut payload, declared_len, limits.body_bytes).await?;
            parse_json(&body, limits.json_depth).map(ApiJson)
        })
    }
}

/// A JSON body that may be left out entirely (no body, no Content-Type); a body
/// that is there is checked exactly like `ApiJson`.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let empty = !req.headers().contains_key(header::CONTENT_TYPE)
            && req.headers().get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0");
        if empty {
            return Box::pin(async { Ok(OptionalJson(None)) });
        }
        let inner = ApiJson::<T>::from_request(req, payload);
        Box::pin(async move { Ok(OptionalJson(Some(inner.await?.0))) })
    }
}

/// Reads the whole body, refusing it as soon as it is known to exceed `limit`.
pub async fn read_limited(payload: &mut Payload, declared_len: Option<usize>, limit: usize) -> Result<web::BytesMut, ApiError> {
    let too_large =
        || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the body exceeds {limit} bytes"));
    if declared_len.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8], max_depth: usize) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request("invalid_utf8", format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("malformed_json", "the body is empty; a JSON object was expected"));
    }
    if json_depth(text) > max_depth {
        return Err(ApiError::bad_request("json_too_deep", format!("the JSON nests deeper than {max_depth} levels")));
    }
    serde_json::from_str(text).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::validation("invalid_field", e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
        }
    })
}

/// The deepest nesting of arrays/objects, ignoring brackets inside strings.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        text: String,
    }

    #[test]
    fn each_failure_has_its_code() {
        let code = |body: &[u8]| parse_json::<Body>(body, 4).unwrap_err().code;
        assert_eq!(code(b"{\"text\": "), "malformed_json");
        assert_eq!(code(b""), "malformed_json");
        assert_eq!(code(b"{\"text\": 5}"), "invalid_field");
        assert_eq!(code(b"{\"text\": \"a\", \"extra\": 1}"), "invalid_field");
        assert_eq!(code(b"{\"text\": \"\xff\"}"), "invalid_utf8");
        assert_eq!(code(b"[[[[[1]]]]]"), "json_too_deep");
        assert!(parse_json::<Body>("{\"text\": \"[[[[[[\"}".as_bytes(), 4).is_ok(), "brackets in strings do not count");
    }
}
