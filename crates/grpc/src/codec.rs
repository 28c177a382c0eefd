//! The service's protobuf codec: tonic's prost codec, except that an
//! `AppendRequest` is refused before it is decoded if it holds more than
//! [`MAX_BATCH`] events. The message limit alone ([`crate::MAX_MESSAGE_BYTES`])
//! leaves room for some 1.5 million empty envelopes (2 bytes each on the
//! wire, about 240 in memory): counting the top-level fields first, which
//! costs a pass over bytes already in memory, bounds what decoding one call
//! can allocate to about what the bytes themselves take.

use std::any::TypeId;
use std::marker::PhantomData;

use openptl_app::ApiError;
use openptl_app::{AppError, MAX_BATCH};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, ProstCodec};
use tonic::Status;

use crate::proto::AppendRequest;

/// tonic's prost codec with the event count checked before decoding (the
/// generated server and client use it: `build.rs`, `codec_path`).
pub struct BoundedCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        BoundedCodec(ProstCodec::default())
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = BoundedDecoder<U, <ProstCodec<T, U> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(self.0.decoder(), PhantomData)
    }
}

/// The prost decoder, after the count.
pub struct BoundedDecoder<U, D>(D, PhantomData<fn() -> U>);

impl<U, D> Decoder for BoundedDecoder<U, D>
where
    U: 'static,
    D: Decoder<Item = U, Error = Status>,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if TypeId::of::<U>() == TypeId::of::<AppendRequest>() {
            let bytes = prost::bytes::Buf::chunk(buf);
            // A message is one contiguous buffer in tonic; if it ever is
            // not, the count covers what is there and decoding checks the
            // count again (the handler).
            if let Some(n) = length_delimited_fields(bytes).filter(|n| *n > MAX_BATCH) {
                return Err(crate::status(ApiError::App(AppError::InvalidQuery {
                    field: "events".into(),
                    problem: format!("holds {n} events; send at most {MAX_BATCH} per call"),
                })));
            }
        }
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// How many top-level length-delimited fields `bytes` holds (an
/// `AppendRequest`'s are its events), or None if it is not protobuf (the
/// decoder then says what is wrong).
fn length_delimited_fields(mut bytes: &[u8]) -> Option<usize> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut n = 0;
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut bytes)?;
                0
            }
            1 => 8,
            2 => {
                n += 1;
                usize::try_from(varint(&mut bytes)?).ok()?
            }
            5 => 4,
            _ => return None,
        };
        bytes = bytes.get(skip..)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Envelope;

    #[test]
    fn counts_the_events_of_an_append() {
        let request = AppendRequest {
            events: vec![Envelope::default(); 1001],
        };
        let bytes = request.encode_to_vec();
        assert_eq!(length_delimited_fields(&bytes), Some(1001));
        assert_eq!(length_delimited_fields(b"\x0a\x05abc"), None);
        assert_eq!(length_delimited_fields(&[]), Some(0));
    }
}
