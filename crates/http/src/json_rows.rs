//! Large JSON documents written on every core: a list of rows, a slice of
//! rows at a time, each slice into a buffer of its size, the document given
//! as those pieces in order rather than copied into one (the CWT submission
//! as JSON is hundreds of MB at alliance scale).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `{"<name>": head, "rows": [items…]}` as pieces, in order: `slice` items
/// at a time on every core, `bytes` an item's size as JSON, about (for the
/// buffers' size).
pub(crate) fn rows_on_every_core<T: Serialize + Sync>(
    (name, head): (&str, &impl Serialize),
    items: &[T],
    slice: usize,
    bytes: impl Fn(&T) -> usize + Sync,
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    let slices: Vec<&[T]> = items.chunks(slice.max(1)).collect();
    let written = openptl_app::par_batches(&slices, |slice| {
        let mut out = Vec::with_capacity(slice.iter().map(|item| bytes(item) + 1).sum());
        for item in *slice {
            if !out.is_empty() {
                out.push(b',');
            }
            if let Err(e) = serde_json::to_writer(&mut out, item) {
                return Some(Err(e));
            }
        }
        Some(Ok(out))
    });
    let mut first = b"{".to_vec();
    serde_json::to_writer(&mut first, name)?;
    first.push(b':');
    serde_json::to_writer(&mut first, head)?;
    first.extend_from_slice(b",\"rows\":[");
    let mut pieces = Vec::with_capacity(2 * written.len() + 1);
    pieces.push(first);
    for (i, rows) in written.into_iter().enumerate() {
        if i > 0 {
            // Between two slices' rows.
            pieces.push(b",".to_vec());
        }
        pieces.push(rows?);
    }
    pieces.push(b"]}".to_vec());
    Ok(pieces)
}

/// A JSON document given as `pieces`, in order, with its length.
pub(crate) fn response(pieces: Vec<Vec<u8>>) -> Response {
    let length: usize = pieces.iter().map(Vec::len).sum();
    let body = axum::body::Body::from_stream(futures_util::stream::iter(
        pieces.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written a slice at a time on every core, a document is the one
    /// serde writes whole, whatever the slice.
    #[test]
    fn a_document_written_on_every_core_is_the_same() {
        #[derive(Serialize)]
        struct Whole<'a> {
            period: &'a str,
            rows: &'a [(usize, String)],
        }
        for count in [0, 1, 2, 23] {
            let items: Vec<(usize, String)> = (0..count)
                .map(|i| (i, format!("row {i}, \"{i}\"")))
                .collect();
            let whole = serde_json::to_vec(&Whole {
                period: "2025-03",
                rows: &items,
            })
            .unwrap();
            for slice in [1, 2, 5, 23, 100] {
                let pieces =
                    rows_on_every_core(("period", &"2025-03"), &items, slice, |_| 4).unwrap();
                assert_eq!(
                    String::from_utf8(pieces.concat()).unwrap(),
                    String::from_utf8(whole.clone()).unwrap(),
                    "{count} rows in slices of {slice}"
                );
            }
        }
    }
}
