//! Payload compression, so that no history event carries a large plain payload (a national
//! promotion's 78 KB spec is a ~9 KB start event).
//!
//! The wire format is the Go SDK's `converter.NewZlibCodec`: the whole original `Payload` message
//! (metadata and data), protobuf-encoded and zlib-compressed, in a payload whose only metadata is
//! `encoding: binary/zlib`. Any Go codec server decodes what this one encodes, and the other way
//! round. Payloads below a threshold stay plain JSON, so the small messages clients we did not
//! write send and read (signals, updates, small queries) need no codec at all; a larger one is
//! compressed only when that makes it smaller.
//!
//! Decoding touches only `binary/zlib` payloads, so plain payloads sent by any client (a start
//! from the `temporal` CLI, another SDK's signal) are read as before, and the threshold may differ
//! between processes. For what a client without this codec sees, the dashboard serves it as a
//! codec server (`/codec/encode`, `/codec/decode`), for the Web UI (`--ui-codec-endpoint`) and
//! the `temporal` CLI (`--codec-endpoint`).

use flate2::{Compression, read::ZlibDecoder, write::ZlibEncoder};
use futures::{FutureExt, future::BoxFuture};
use prost::Message;
use std::io::{Read, Write};
use temporalio_common::{
    data_converters::{
        DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
        SerializationContextData,
    },
    protos::temporal::api::common::v1::Payload,
};

/// The `encoding` metadata of a compressed payload (the Go SDK's zlib codec's).
pub const ENCODING: &str = "binary/zlib";

/// Default threshold: payloads of at least this many bytes (the protobuf-encoded payload) are
/// compressed. Small enough that every large plan-bearing payload is, large enough that a signal,
/// an update or a small promotion's status stays readable JSON for any client.
pub const COMPRESS_ABOVE: usize = 8 * 1024;

/// Environment variable overriding [`COMPRESS_ABOVE`] for this process (bytes; `off` never
/// compresses). Decoding is unaffected, so processes may differ.
pub const COMPRESS_ABOVE_ENV: &str = "PROMO_COMPRESS_ABOVE";

/// The largest payload a compressed one may expand to (a corrupt or hostile payload is refused
/// instead of exhausting memory). Temporal refuses payloads above 2 MB plain; this leaves room.
pub const MAX_DECODED: u64 = 64 * 1024 * 1024;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The zlib stream is corrupt or truncated.
    #[error("binary/zlib payload: corrupt zlib data: {0}")]
    Corrupt(#[source] std::io::Error),
    /// It expands beyond [`MAX_DECODED`].
    #[error("binary/zlib payload: expands beyond {MAX_DECODED} bytes")]
    TooLarge,
    /// What it expands to is not a protobuf `Payload`.
    #[error("binary/zlib payload: the decompressed bytes are not a temporal.api.common.v1.Payload: {0}")]
    NotAPayload(#[source] prost::DecodeError),
}

/// The zlib payload codec ([module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZlibCodec {
    /// Payloads whose protobuf encoding has at least this many bytes are compressed (when that
    /// makes them smaller); `usize::MAX` never compresses.
    pub compress_above: usize,
}

impl Default for ZlibCodec {
    fn default() -> Self {
        Self { compress_above: COMPRESS_ABOVE }
    }
}

impl ZlibCodec {
    /// The codec with this process's threshold: [`COMPRESS_ABOVE_ENV`] when set and valid,
    /// [`COMPRESS_ABOVE`] otherwise (an invalid value is logged, not fatal).
    pub fn from_env() -> Self {
        match std::env::var(COMPRESS_ABOVE_ENV) {
            Err(_) => Self::default(),
            Ok(v) if v.trim().eq_ignore_ascii_case("off") => Self { compress_above: usize::MAX },
            Ok(v) => match v.trim().parse() {
                Ok(n) => Self { compress_above: n },
                Err(e) => {
                    tracing::warn!(
                        "{COMPRESS_ABOVE_ENV}={v:?} is not a byte count or `off` ({e}); using {COMPRESS_ABOVE}"
                    );
                    Self::default()
                }
            },
        }
    }

    /// `p` compressed, or `p` itself when it is below the threshold or would not shrink.
    pub fn encode_one(&self, p: Payload) -> Payload {
        let plain_len = p.encoded_len();
        if plain_len < self.compress_above || is_compressed(&p) {
            return p;
        }
        let plain = p.encode_to_vec();
        let mut z = ZlibEncoder::new(Vec::with_capacity(plain_len / 4), Compression::default());
        // Writing into a Vec cannot fail.
        let compressed = z.write_all(&plain).and_then(|()| z.finish());
        match compressed {
            Ok(data) if data.len() < plain_len => Payload {
                metadata: [("encoding".to_owned(), ENCODING.as_bytes().to_vec())].into(),
                data,
                ..Default::default()
            },
            _ => p,
        }
    }

    /// The payload `p` was compressed from; `p` itself when it is not `binary/zlib`.
    pub fn decode_one(p: Payload) -> Result<Payload, CodecError> {
        if !is_compressed(&p) {
            return Ok(p);
        }
        let mut plain = Vec::with_capacity(p.data.len() * 4);
        let read = ZlibDecoder::new(p.data.as_slice())
            .take(MAX_DECODED + 1)
            .read_to_end(&mut plain)
            .map_err(CodecError::Corrupt)?;
        if read as u64 > MAX_DECODED {
            return Err(CodecError::TooLarge);
        }
        Payload::decode(plain.as_slice()).map_err(CodecError::NotAPayload)
    }
}

/// Whether `p` is a compressed payload.
pub fn is_compressed(p: &Payload) -> bool {
    p.metadata.get("encoding").is_some_and(|e| e == ENCODING.as_bytes())
}

impl PayloadCodec for ZlibCodec {
    fn encode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let out = payloads.into_iter().map(|p| self.encode_one(p)).collect();
        async move { Ok(out) }.boxed()
    }

    fn decode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let out = payloads
            .into_iter()
            .map(ZlibCodec::decode_one)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PayloadConversionError::EncodingError(Box::new(e)));
        async move { out }.boxed()
    }
}

/// The data converter of every promotion client and worker: the SDK's JSON payloads and
/// failures, with [`ZlibCodec::from_env`].
pub fn data_converter() -> DataConverter {
    DataConverter::new(PayloadConverter::default(), DefaultFailureConverter::default(), ZlibCodec::from_env())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_payload(v: &serde_json::Value) -> Payload {
        Payload {
            metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
            data: serde_json::to_vec(v).unwrap(),
            ..Default::default()
        }
    }

    fn big_spec_like(lines: usize) -> serde_json::Value {
        let lines: Vec<_> = (0..lines)
            .map(|i| serde_json::json!({"sku": format!("SKU-{i:05}"), "regularPrice": "19.99", "promoPrice": "15.99", "fundingAgreementId": format!("FA-{:03}", i % 40)}))
            .collect();
        serde_json::json!({"promotionId": "NATIONAL-LAUNCH", "lines": lines})
    }

    #[test]
    fn a_large_payload_is_compressed_and_comes_back_identical() {
        let codec = ZlibCodec::default();
        let p = json_payload(&big_spec_like(1200));
        let e = codec.encode_one(p.clone());
        assert!(is_compressed(&e));
        assert_eq!(e.metadata.len(), 1, "only the encoding, as the Go codec writes");
        assert!(e.encoded_len() * 4 < p.encoded_len(), "{} vs {}", e.encoded_len(), p.encoded_len());
        assert_eq!(ZlibCodec::decode_one(e).unwrap(), p);
    }

    #[test]
    fn small_payloads_and_foreign_encodings_pass_through() {
        let codec = ZlibCodec::default();
        let small = json_payload(&serde_json::json!({"approverId": "E2001"}));
        assert_eq!(codec.encode_one(small.clone()), small);
        assert_eq!(ZlibCodec::decode_one(small.clone()).unwrap(), small);
        // Already compressed: not compressed twice.
        let big = codec.encode_one(json_payload(&big_spec_like(1200)));
        assert_eq!(ZlibCodec { compress_above: 0 }.encode_one(big.clone()), big);
        // Incompressible bytes above the threshold stay as they are.
        let mut noise = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        let raw = Payload {
            metadata: [("encoding".to_owned(), b"binary/plain".to_vec())].into(),
            data: noise,
            ..Default::default()
        };
        assert_eq!(codec.encode_one(raw.clone()), raw);
        assert_eq!(
            ZlibCodec { compress_above: usize::MAX }.encode_one(json_payload(&big_spec_like(1200))).metadata
                ["encoding"],
            b"json/plain"
        );
    }

    /// A payload compressed the way the Go SDK's zlib codec does it (zlib over the protobuf
    /// `Payload`, built here byte by byte from the protobuf wire format) decodes.
    #[test]
    fn decodes_the_go_codecs_format() {
        // Payload{metadata: {"encoding": "json/plain"}, data: "{\"a\":1}"}:
        // field 1 (map entry: key=1, value=2), field 2 (bytes).
        let entry = [&[0x0a, 8][..], b"encoding", &[0x12, 10], b"json/plain"].concat();
        let msg = [&[0x0a, entry.len() as u8][..], &entry, &[0x12, 7], b"{\"a\":1}"].concat();
        let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
        z.write_all(&msg).unwrap();
        let go = Payload {
            metadata: [("encoding".to_owned(), ENCODING.as_bytes().to_vec())].into(),
            data: z.finish().unwrap(),
            ..Default::default()
        };
        let p = ZlibCodec::decode_one(go).unwrap();
        assert_eq!(p.metadata["encoding"], b"json/plain");
        assert_eq!(p.data, b"{\"a\":1}");
    }

    #[test]
    fn corrupt_and_oversized_payloads_are_refused_with_a_reason() {
        let bad = Payload {
            metadata: [("encoding".to_owned(), ENCODING.as_bytes().to_vec())].into(),
            data: b"not zlib".to_vec(),
            ..Default::default()
        };
        assert!(matches!(ZlibCodec::decode_one(bad), Err(CodecError::Corrupt(_))));
        let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..=(MAX_DECODED >> 20) {
            z.write_all(&zeros).unwrap();
        }
        let bomb = Payload {
            metadata: [("encoding".to_owned(), ENCODING.as_bytes().to_vec())].into(),
            data: z.finish().unwrap(),
            ..Default::default()
        };
        assert!(bomb.data.len() < 1 << 20);
        assert!(matches!(ZlibCodec::decode_one(bomb), Err(CodecError::TooLarge)));
    }
}
