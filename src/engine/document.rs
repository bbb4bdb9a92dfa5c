//! Every JSON document ocitar parses — `index.json`, `manifest.json`, `oci-layout`, indexes, manifests and
//! configs, from a store or an archive alike — and every limit on them: one [`parse_document`] checks the
//! shape before parsing, so no document can make ocitar hold more than a bounded amount of memory.

use std::io::{self, Read};

use serde_json::Value;

/// Largest JSON document ocitar reads or writes (a store's `index.json` included: a load that would
/// write a larger one is refused, so that the store can always be read again).
pub const MAX_DOCUMENT_BYTES: u64 = 20 << 20;
/// Deepest nesting accepted, of JSON values within a document and of indexes within indexes.
pub const MAX_DEPTH: usize = 16;
/// Most values (array elements, object keys and values) a document may hold: a parsed value takes 32
/// bytes or more, so 20 MiB of `[0,0,…]` would otherwise take over 300 MiB.
pub const MAX_JSON_VALUES: usize = 1_000_000;
/// Most objects a document may hold: a parsed non-empty object takes about 700 bytes.
pub const MAX_JSON_OBJECTS: usize = 100_000;
/// Most entries of one `annotations` object (images carry a few dozen; every annotation is copied into
/// each descriptor and into the store's `index.json`).
pub const MAX_ANNOTATIONS: usize = 1_000;

/// The shape of a JSON text, as [`json_shape`] counts it without parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The deepest nesting of arrays and objects.
    pub depth: usize,
    /// An upper bound of the values and keys it holds.
    pub values: usize,
    /// The objects it holds.
    pub objects: usize,
}

/// The shape of a JSON text, strings skipped.
pub fn json_shape(bytes: &[u8]) -> Shape {
    let (mut depth, mut max, mut values, mut objects) = (0usize, 0usize, 1usize, 0usize);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                i = string_end(bytes, i);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
                values += 1;
                objects += usize::from(b == b'{');
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' | b':' => values += 1,
            _ => {}
        }
        i += 1;
    }
    Shape {
        depth: max,
        values,
        objects,
    }
}

/// Where the JSON string that starts at `start` (its opening quote) ends: the index just past its closing
/// quote, or the end of `bytes` when it is not closed. Most of a store's `index.json` is strings (digests,
/// names): they are skipped a vector at a time.
pub fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    loop {
        match bytes
            .get(i..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            Some(j) if bytes.get(i + j) == Some(&b'\\') => i += j + 2,
            Some(j) => return i + j + 1,
            None => return bytes.len(),
        }
    }
}

/// Parse a JSON text of any kind (`manifest.json` is an array) within every limit of this module.
///
/// # Errors
/// A reason string naming the limit passed, or why the bytes are not JSON.
pub fn parse_json(bytes: &[u8]) -> std::result::Result<Value, String> {
    check_limits(bytes)?;
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    check_annotations(&v, 0)?;
    Ok(v)
}

/// The limits [`parse_json`] checks before parsing: size, nesting, values and objects (a writer checks
/// what it writes with them, so that ocitar can read it again).
///
/// # Errors
/// A reason string naming the limit passed.
pub fn check_limits(bytes: &[u8]) -> std::result::Result<(), String> {
    let objects = check_size_and_shape(bytes)?;
    if objects > MAX_JSON_OBJECTS {
        return Err(format!(
            "JSON document holds more than {MAX_JSON_VALUES} values or {MAX_JSON_OBJECTS} objects"
        ));
    }
    Ok(())
}

/// The limits of [`check_limits`] but the count of objects, which it returns: for a reader that never
/// builds a tree of JSON objects (a store's `index.json` read entry by entry, `store::Entries`), whose
/// memory the size and the count of values bound.
///
/// # Errors
/// A reason string naming the limit passed.
pub fn check_size_and_shape(bytes: &[u8]) -> std::result::Result<usize, String> {
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(over_size(bytes.len() as u64));
    }
    let Shape {
        depth,
        values,
        objects,
    } = json_shape(bytes);
    if depth > MAX_DEPTH {
        return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
    }
    if values > MAX_JSON_VALUES {
        return Err(format!(
            "JSON document holds more than {MAX_JSON_VALUES} values or {MAX_JSON_OBJECTS} objects"
        ));
    }
    Ok(objects)
}

/// Parse a JSON document that must be an object, within every limit of this module.
///
/// # Errors
/// As [`parse_json`], and when the document is not an object.
pub fn parse_document(bytes: &[u8]) -> std::result::Result<Value, String> {
    let v = parse_json(bytes)?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    Ok(v)
}

/// The reason for a document of `size` bytes.
pub fn over_size(size: u64) -> String {
    format!("{size} bytes is over the {MAX_DOCUMENT_BYTES}-byte limit for JSON documents")
}

/// Read a whole document from `r`, which declares `size` bytes: `Ok(None)` when it holds more than
/// [`MAX_DOCUMENT_BYTES`]. Memory is reserved up front and a reservation that fails is an error, not an
/// abort.
///
/// # Errors
/// The reader's errors; [`io::ErrorKind::OutOfMemory`] when the buffer cannot be reserved.
pub fn read_bounded<R: Read>(r: R, size: u64) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    out.try_reserve_exact(usize::try_from(size.min(MAX_DOCUMENT_BYTES + 1)).unwrap_or(0))
        .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
    r.take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= MAX_DOCUMENT_BYTES).then_some(out))
}

/// Check an `oci-layout` document: a JSON object whose `imageLayoutVersion` is a 1.x version (load,
/// inspect and verify refuse an unknown major version alike).
///
/// # Errors
/// A reason naming what was expected and what was found.
pub fn check_layout(bytes: &[u8]) -> std::result::Result<(), String> {
    let expected = String::from_utf8_lossy(super::store::OCI_LAYOUT);
    let v = parse_json(bytes).map_err(|e| format!("{e}; expected {expected}"))?;
    let Ok(layout) = super::oci::typed::<super::oci::OciLayout>(&v) else {
        return Err(format!(
            "found {}, expected {expected}",
            String::from_utf8_lossy(bytes.get(..200).unwrap_or(bytes))
        ));
    };
    let version = layout.image_layout_version();
    if version.split('.').next() == Some("1") {
        Ok(())
    } else {
        Err(format!(
            "imageLayoutVersion {version:?} is not a 1.x layout; expected {expected}"
        ))
    }
}

/// Refuse an `annotations` object with more than [`MAX_ANNOTATIONS`] entries anywhere in `v`.
fn check_annotations(v: &Value, depth: usize) -> std::result::Result<(), String> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if let (true, Value::Object(a)) = (k == "annotations", child) {
                    if a.len() > MAX_ANNOTATIONS {
                        return Err(format!(
                            "an annotations object holds {} entries, over the limit of {MAX_ANNOTATIONS}",
                            a.len()
                        ));
                    }
                }
                check_annotations(child, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(|c| check_annotations(c, depth + 1)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_counts_outside_strings() {
        let shape = |depth, values, objects| Shape {
            depth,
            values,
            objects,
        };
        assert_eq!(json_shape(br#"{"a":[1,2,{"b":"[{,:"}]}"#), shape(3, 8, 2));
        assert_eq!(json_shape(br#""\"[""#), shape(0, 1, 0));
        assert_eq!(json_shape(b"[[[]]]"), shape(3, 4, 0));
        assert_eq!(json_shape(br#"["\\",{"#), shape(2, 4, 1));
        assert_eq!(json_shape(br#"["\"#), shape(1, 2, 0));
        assert_eq!(json_shape(br#"["#), shape(1, 2, 0));
    }

    #[test]
    fn annotations_over_the_limit_are_refused_anywhere() {
        let many: serde_json::Map<String, Value> = (0..=MAX_ANNOTATIONS)
            .map(|i| (format!("k{i}"), Value::from("v")))
            .collect();
        let doc = serde_json::json!({"manifests": [{"annotations": many}]});
        let err = parse_document(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
        assert!(
            err.contains("annotations object holds 1001 entries"),
            "{err}"
        );
        let fine = serde_json::json!({"annotations": {"a": "b"}});
        assert!(parse_document(&serde_json::to_vec(&fine).unwrap()).is_ok());
    }

    #[test]
    fn limits_are_checked_before_parsing() {
        assert!(parse_json(&[b'['; 17]).unwrap_err().contains("deeper"));
        let wide = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES));
        assert!(parse_json(wide.as_bytes()).unwrap_err().contains("values"));
        assert!(parse_document(b"[]").unwrap_err().contains("object"));
    }

    #[test]
    fn read_bounded_stops_past_the_limit() {
        let big = vec![b' '; usize::try_from(MAX_DOCUMENT_BYTES).unwrap() + 1];
        assert!(read_bounded(big.as_slice(), 10).unwrap().is_none());
        assert_eq!(read_bounded(&b"{}"[..], 2).unwrap().unwrap(), b"{}");
    }
}
