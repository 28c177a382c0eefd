//! Large JSON documents written on every core: a list of rows, a slice of
//! rows at a time, each slice into a buffer of its size, the document given
//! as those pieces in order rather than copied into one (the CWT submission
//! as JSON is hundreds of MB at alliance scale). A row that is an object of
//! known names with string values is written by [`Object`]: its names
//! quoted once, not escaped again on every row.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `{"<name>": head, "rows": [items…]}` as pieces, in order: `slice` items
/// at a time on every core, each written by `write`; `bytes` an item's
/// size as JSON, about (for the buffers' size).
pub(crate) fn rows_on_every_core<T: Sync>(
    (name, head): (&str, &impl Serialize),
    items: &[T],
    slice: usize,
    bytes: impl Fn(&T) -> usize + Sync,
    write: impl Fn(&mut Vec<u8>, &T) -> Result<(), serde_json::Error> + Sync,
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    let mut first = b"{".to_vec();
    serde_json::to_writer(&mut first, name)?;
    first.push(b':');
    serde_json::to_writer(&mut first, head)?;
    first.push(b',');
    rows_after(first, items, slice, bytes, write)
}

/// `head`'s members (an object) and `"rows": [items…]` as pieces, in
/// order, each item serialized by serde, `slice` at a time on every core:
/// a list behind a figure is hundreds of thousands of lines at alliance
/// scale, which one core took most of a second to write.
pub(crate) fn object_with_rows<T: Serialize + Sync>(
    head: &serde_json::Map<String, serde_json::Value>,
    items: &[T],
    slice: usize,
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    let mut first = serde_json::to_vec(head)?;
    // The head's members, then the rows': its closing brace taken off.
    first.pop();
    if !head.is_empty() {
        first.push(b',');
    }
    rows_after(
        first,
        items,
        slice,
        |_| ROW_BYTES,
        |out, item| serde_json::to_writer(out, item),
    )
}

/// About the bytes of a list's row as JSON (a line behind a figure is a
/// score of named fields), for the buffers' size.
const ROW_BYTES: usize = 256;

/// `first` (an object's opening, up to where its rows go), then
/// `"rows": [items…]}`, as pieces in order ([`rows_on_every_core`]).
fn rows_after<T: Sync>(
    mut first: Vec<u8>,
    items: &[T],
    slice: usize,
    bytes: impl Fn(&T) -> usize + Sync,
    write: impl Fn(&mut Vec<u8>, &T) -> Result<(), serde_json::Error> + Sync,
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    let slices: Vec<&[T]> = items.chunks(slice.max(1)).collect();
    let written = openptl_app::par_batches(&slices, |slice| {
        let mut out = Vec::with_capacity(slice.iter().map(|item| bytes(item) + 1).sum());
        for item in *slice {
            if !out.is_empty() {
                out.push(b',');
            }
            if let Err(e) = write(&mut out, item) {
                return Some(Err(e));
            }
        }
        Some(Ok(out))
    });
    first.extend_from_slice(b"\"rows\":[");
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

/// An object of known names, each value a string: the names are quoted,
/// with their colons, once; a row is then copied name by name, a value
/// escaped only when it holds a character JSON escapes.
pub(crate) struct Object {
    /// What comes before each value, as bytes: `{"name":"` for the first,
    /// `","name":"` for each other (the previous value's closing quote,
    /// a comma, the name and the value's opening quote), so that a value
    /// is written with two copies.
    before: Vec<Vec<u8>>,
}

impl Object {
    pub(crate) fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Object, serde_json::Error> {
        let mut before = Vec::new();
        for name in names {
            let mut out = if before.is_empty() {
                b"{".to_vec()
            } else {
                b"\",".to_vec()
            };
            serde_json::to_writer(&mut out, name)?;
            out.extend_from_slice(b":\"");
            before.push(out);
        }
        Ok(Object { before })
    }

    /// An object's bytes besides its values: the names with their colons,
    /// the values' quotes, the commas and the braces.
    pub(crate) fn bytes(&self) -> usize {
        self.before.iter().map(Vec::len).sum::<usize>() + 2
    }

    /// Writes `values` under the names, in order, as the object (as many
    /// members as there are both names and values).
    pub(crate) fn write<'a>(
        &self,
        out: &mut Vec<u8>,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), serde_json::Error> {
        let mut written = 0;
        for (before, value) in self.before.iter().zip(values) {
            out.extend_from_slice(before);
            // What serde_json escapes: control characters, quotes and
            // backslashes; anything else is written as it is.
            if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                out.extend_from_slice(value.as_bytes());
            } else {
                // serde writes the value with its own quotes.
                out.pop();
                serde_json::to_writer(&mut *out, value)?;
                out.pop();
            }
            written += 1;
        }
        out.extend_from_slice(if written == 0 { b"{}" } else { b"\"}" });
        Ok(())
    }
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
                let pieces = rows_on_every_core(
                    ("period", &"2025-03"),
                    &items,
                    slice,
                    |_| 4,
                    |out, item| serde_json::to_writer(out, item),
                )
                .unwrap();
                assert_eq!(
                    String::from_utf8(pieces.concat()).unwrap(),
                    String::from_utf8(whole.clone()).unwrap(),
                    "{count} rows in slices of {slice}"
                );
            }
        }
    }

    /// A head's members and rows written on every core are the object
    /// serde writes whole, whatever the head holds and the slice.
    #[test]
    fn an_object_with_rows_is_the_same() {
        for head in [
            serde_json::json!({}),
            serde_json::json!({"standard": "fds", "share": 1.5, "total": 3}),
        ] {
            let head = head.as_object().unwrap().clone();
            for count in [0, 1, 2, 23] {
                let items: Vec<(usize, String)> =
                    (0..count).map(|i| (i, format!("row \"{i}\""))).collect();
                let mut whole = head.clone();
                whole.insert("rows".into(), serde_json::json!(items));
                for slice in [1, 5, 100] {
                    let pieces = object_with_rows(&head, &items, slice).unwrap();
                    let written: serde_json::Value =
                        serde_json::from_slice(&pieces.concat()).unwrap();
                    assert_eq!(written, serde_json::Value::Object(whole.clone()));
                }
            }
        }
    }

    /// An object written by [`Object`] is the one serde writes as a map,
    /// whatever its names and values hold: every ASCII character (the
    /// control characters, quotes and backslashes escaped), and others.
    #[test]
    fn an_object_is_written_as_serde_writes_it() {
        struct Map<'a>(Vec<(&'a str, &'a str)>);
        impl Serialize for Map<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (name, value) in &self.0 {
                    map.serialize_entry(name, value)?;
                }
                map.end()
            }
        }
        let ascii: Vec<String> = (0u8..128).map(|b| format!("a{}z", b as char)).collect();
        let mut values: Vec<&str> = ascii.iter().map(String::as_str).collect();
        values.extend(["", "RX1", "2025-03-04", "é\u{2028}€😀", "\"\\\n\u{7f}"]);
        let names: Vec<&str> = values.iter().rev().copied().collect();
        for count in [0, 1, 2, values.len()] {
            let (names, values) = (&names[..count], &values[..count]);
            let object = Object::new(names.iter().copied()).unwrap();
            let mut written = Vec::new();
            object.write(&mut written, values.iter().copied()).unwrap();
            let map = Map(names.iter().copied().zip(values.iter().copied()).collect());
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&map).unwrap(),
                "{count} members"
            );
            let values: usize = values.iter().map(|v| v.len()).sum();
            assert!(object.bytes() + values <= serde_json::to_vec(&map).unwrap().len());
        }
    }
}
