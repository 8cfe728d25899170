//! The dashboard as a Temporal codec server: `POST /codec/decode` and `POST /codec/encode` take
//! and return `temporal.api.common.v1.Payloads` in proto3 JSON, the protocol the Web UI
//! (`temporal server start-dev --ui-codec-endpoint http://HOST:PORT/codec`, or the namespace's
//! codec setting) and the `temporal` CLI (`--codec-endpoint http://HOST:PORT/codec`) speak. They
//! apply the promotion payload codec ([`promo_workflows::codec`]), so a client without it reads
//! a compressed spec or plan as JSON. CORS is open to any origin (the Web UI calls from the
//! browser); the codec only compresses, it hides nothing.

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use promo_workflows::codec::ZlibCodec;
use temporalio_common::protos::temporal::api::common::v1::Payloads;

/// The `/codec` routes, any state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/codec/decode", post(decode).options(preflight))
        .route("/codec/encode", post(encode).options(preflight))
}

fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, x-namespace, authorization"),
    );
    r
}

async fn preflight() -> Response {
    cors(StatusCode::NO_CONTENT.into_response())
}

fn parse(body: &Bytes) -> Result<Payloads, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "body: expected temporal.api.common.v1.Payloads as proto3 JSON ({{\"payloads\": [...]}}): {e}"
        )
    })
}

fn bad_request(why: String) -> Response {
    cors((StatusCode::BAD_REQUEST, why).into_response())
}

fn reply(p: &Payloads) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match serde_json::to_vec(p) {
        Ok(body) => cors((headers, body).into_response()),
        Err(e) => {
            cors((StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the reply: {e}")).into_response())
        }
    }
}

async fn decode(body: Bytes) -> Response {
    let p = match parse(&body) {
        Ok(p) => p,
        Err(why) => return bad_request(why),
    };
    let decoded: Result<Vec<_>, _> = p
        .payloads
        .into_iter()
        .enumerate()
        .map(|(i, x)| ZlibCodec::decode_one(x).map_err(|e| format!("payloads[{i}]: {e}")))
        .collect();
    match decoded {
        Ok(d) => reply(&Payloads { payloads: d }),
        Err(why) => bad_request(why),
    }
}

async fn encode(body: Bytes) -> Response {
    let p = match parse(&body) {
        Ok(p) => p,
        Err(why) => return bad_request(why),
    };
    let codec = ZlibCodec::from_env();
    reply(&Payloads { payloads: p.payloads.into_iter().map(|x| codec.encode_one(x)).collect() })
}
