//! Turning a file's text into JSON documents as strictly as the API server reads them:
//! duplicate keys, `.inf` / `.nan` and YAML that JSON cannot hold are errors, never a silent
//! "last one wins" or `null`. YAML merge keys (`<<`) are resolved. A UTF-8 byte order mark
//! is ignored.
//!
//! A multi-document YAML file is split at its `---` / `...` markers before parsing, so a
//! syntax error in one document is reported and the documents after it are still read.
//!
//! YAML is read with `serde-saphyr` under a parse budget ([`MAX_DEPTH`] levels of nesting,
//! a cap on nodes, aliases and what aliases expand to, and [`MAX_DOCUMENT_BYTES`] per
//! document): a hostile document is refused after work proportional to the budget, not to
//! its size. Plain scalars resolve as YAML 1.2's core schema does (`no`, `on`, `0X1F`,
//! `1_000`, `0755` and `1:20` are strings); both YAML and JSON go through one strict value
//! visitor, so a repeated key or a non-finite number is refused with the same words and the
//! field's path in either.

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::budget::BudgetBreach;

/// Deepest nesting of mappings and sequences a document may have, as the JSON reader
/// (`serde_json`'s recursion limit) allows.
pub const MAX_DEPTH: usize = 128;

/// Largest YAML document read (after splitting a file at its document markers). The API
/// server takes requests of at most 3 MiB; this leaves room for a `v1 List` of many objects.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

/// Nodes (scalars, mappings, sequences, counting those aliases expand to) one document may
/// hold: about 100,000 objects in one `v1 List`.
const MAX_NODES: usize = 4_000_000;

/// Alias uses one document may hold, and parser events they may replay in all: manifests
/// rarely use aliases at all, and a "billion laughs" document stops here.
const MAX_ALIASES: usize = 10_000;
const MAX_REPLAYED_EVENTS: usize = 200_000;

/// One document of a file: its 1-based number and what it holds.
#[derive(Debug)]
pub struct Document {
    pub number: usize,
    pub content: Result<Value, DocumentError>,
}

/// Why a document could not be read, with the dotted path of the field when one is at fault.
#[derive(Debug, PartialEq)]
pub struct DocumentError {
    pub field: Option<String>,
    pub message: String,
}

impl DocumentError {
    fn new(field: Option<String>, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Stack of the thread a file is read on. The readers recurse once per level of nesting, up
/// to [`MAX_DEPTH`]; in a debug build that takes more than the 2 MiB a test thread or a tokio
/// worker has, so reading never depends on the caller's stack.
const READER_STACK: usize = 64 * 1024 * 1024;

/// Read every document of a file (JSON when `json`, else YAML). Empty documents are left out.
pub fn read(text: &str, json: bool) -> Vec<Document> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("manifest-reader".into())
            .stack_size(READER_STACK)
            .spawn_scoped(scope, || read_here(text, json))
            .map(|reader| reader.join())
    })
    .unwrap_or_else(|e| {
        // No thread to be had: read on this one (enough in a release build's main thread).
        tracing::debug!(error = %e, "reading a manifest file on the caller's thread");
        Ok(read_here(text, json))
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn read_here(text: &str, json: bool) -> Vec<Document> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if json {
        return vec![Document {
            number: 1,
            content: parse_json(text),
        }];
    }
    split_yaml(text)
        .into_iter()
        .filter(|chunk| !is_blank(chunk.text))
        .enumerate()
        .map(|(i, chunk)| Document {
            number: i + 1,
            content: parse_yaml(&chunk),
        })
        .collect()
}

/// A slice of the file holding at most one YAML document.
struct Chunk<'a> {
    text: &'a str,
    /// 0-based line of the file where the slice starts.
    first_line: usize,
}

/// `---` or `...` at the start of a line, alone or followed by white space.
fn marker(line: &str) -> Option<&'static str> {
    ["---", "..."].into_iter().find(|m| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    })
}

/// Split at document markers: a chunk starts at each `---` line and ends after each `...`
/// line. YAML forbids both markers at the start of a line inside a document, so this is
/// where the parser would split too.
fn split_yaml(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 0;
    let mut offset = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        match marker(line) {
            Some("---") => {
                chunks.push(Chunk {
                    text: &text[start..offset],
                    first_line: start_line,
                });
                start = offset;
                start_line = number;
            }
            Some(_) => {
                let end = offset + line.len();
                chunks.push(Chunk {
                    text: &text[start..end],
                    first_line: start_line,
                });
                start = end;
                start_line = number + 1;
            }
            None => {}
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        first_line: start_line,
    });
    chunks
}

/// Nothing but markers, comments, directives and white space.
fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim_start();
        let line = marker(line).map_or(line, |m| line[m.len()..].trim_start());
        line.is_empty() || line.starts_with('#') || line.starts_with('%')
    })
}

/// The reader's settings: the budget above, YAML 1.2 scalars, and repeated keys and
/// non-finite numbers passed on to [`StrictVisitor`], which refuses them with their path.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: 4 * MAX_NODES,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_recorded_anchor_events: MAX_REPLAYED_EVENTS,
            max_total_scalar_bytes: MAX_DOCUMENT_BYTES,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        merge_keys: serde_saphyr::MergeKeyPolicy::Merge,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    }
}

fn parse_yaml(chunk: &Chunk<'_>) -> Result<Value, DocumentError> {
    if chunk.text.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::new(
            None,
            format!(
                "invalid YAML: the document is larger than {} MiB",
                MAX_DOCUMENT_BYTES >> 20
            ),
        ));
    }
    let mut path = None;
    serde_saphyr::with_deserializer_from_str_with_options(chunk.text, yaml_options(), |de| {
        serde_path_to_error::deserialize::<_, StrictValue>(de)
            .map(|v| v.0)
            .map_err(|e| {
                path = Some(e.path().to_string());
                e.into_inner()
            })
    })
    .map_err(|e| yaml_error(&e, path, chunk.first_line))
}

/// A reader error in the words of this tool, with line numbers counted in the whole file.
/// Errors of [`StrictVisitor`] (a repeated key, a non-finite number) name their field;
/// syntax errors and budget breaches do not.
fn yaml_error(err: &serde_saphyr::Error, path: Option<String>, first_line: usize) -> DocumentError {
    let render = || {
        err.render_with_options(serde_saphyr::render_options! {
            line_offset: first_line as u64,
        })
    };
    let at = err
        .location()
        .map(|l| {
            format!(
                " at line {}, column {}",
                l.line() + first_line as u64,
                l.column()
            )
        })
        .unwrap_or_default();
    match original(err) {
        serde_saphyr::Error::Message { .. } => {
            DocumentError::new(path.filter(|p| p != "."), render())
        }
        serde_saphyr::Error::Budget { breach, .. } => {
            DocumentError::new(None, format!("invalid YAML: {}{at}", budget_breach(breach)))
        }
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
        | serde_saphyr::Error::AliasReplayCounterOverflow { .. } => {
            DocumentError::new(None, format!("invalid YAML: {}{at}", aliases_too_many()))
        }
        _ => {
            let message = render();
            if message.contains("recursion limit exceeded") {
                DocumentError::new(None, format!("invalid YAML: {}{at}", nested_too_deep()))
            } else {
                DocumentError::new(None, format!("invalid YAML: {message}"))
            }
        }
    }
}

/// The error itself, out of the wrappers that add a snippet or an alias's locations.
fn original(err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    match err.without_snippet() {
        serde_saphyr::Error::AliasError { error, .. } => original(error),
        other => other,
    }
}

fn aliases_too_many() -> String {
    format!(
        "aliases expand to more than the reader allows (at most {MAX_ALIASES} aliases and {MAX_REPLAYED_EVENTS} nodes replayed)"
    )
}

fn nested_too_deep() -> String {
    format!("nested more than {MAX_DEPTH} levels")
}

/// What a breach of the parse budget means for a manifest.
fn budget_breach(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Depth { .. } => nested_too_deep(),
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
            format!("more than {MAX_NODES} nodes (counting what aliases expand to)")
        }
        BudgetBreach::Aliases { .. }
        | BudgetBreach::Anchors { .. }
        | BudgetBreach::AliasAnchorRatio { .. }
        | BudgetBreach::RecordedAnchorEvents { .. }
        | BudgetBreach::RecordedAnchorBytes { .. } => aliases_too_many(),
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::InputBytes { .. } => format!(
            "the document is larger than {} MiB",
            MAX_DOCUMENT_BYTES >> 20
        ),
        other => format!("exceeds the reader's limits ({other:?})"),
    }
}

fn parse_json(text: &str) -> Result<Value, DocumentError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize::<_, StrictValue>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        let mut message = e.into_inner().to_string();
        if message.contains("recursion limit exceeded") {
            message = format!("{} ({message})", nested_too_deep());
        }
        DocumentError::new(field, format!("invalid JSON: {message}"))
    })?;
    de.end()
        .map_err(|e| DocumentError::new(None, format!("invalid JSON: {e}")))?;
    Ok(value.0)
}

/// A JSON value whose objects may not repeat a key (`serde_json::Value` keeps the last) and
/// whose numbers are finite: what both readers build.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // `.inf`, `-.inf`, `.nan` and `1e400` have no JSON form (the API server's YAML-to-JSON
        // step fails on them): refuse them rather than store `null`.
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| {
                let shown = if v.is_nan() {
                    "NaN"
                } else if v > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                E::custom(format!(
                    "json: unsupported value: {shown} (use a finite number)"
                ))
            })
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if out.contains_key(&key) {
                // Fail inside the value so the error's path ends with the repeated key.
                return map.next_value_seed(Duplicate(key));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key as JSON spells it. A YAML key that resolves to a number or a boolean gets
/// its canonical text (`0x1F: a` is `"31"`, `True: b` is `"true"`), as the API server's
/// YAML-to-JSON step gives it, so `0xB` and `11` are one key (and a repeated one); a null or
/// a collection as a key has no JSON form.
struct Key;

impl<'de> de::DeserializeSeed<'de> for Key {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string, number or boolean as a mapping key (JSON cannot hold others)")
    }
    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        StrictVisitor.visit_f64(v).map(|n| n.to_string())
    }
}

/// The value of a key seen before in the same object: an error.
struct Duplicate(String);

impl<'de> de::DeserializeSeed<'de> for Duplicate {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, _: D) -> Result<Value, D::Error> {
        Err(de::Error::custom(format!("duplicate field {:?}", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(text: &str) -> Vec<Result<Value, DocumentError>> {
        read(text, false).into_iter().map(|d| d.content).collect()
    }

    #[test]
    fn documents_after_a_syntax_error_are_still_read() {
        let docs = contents("a: [1\n---\nb: 2\n---\n# only a comment\n---\nc: {d: 3\n...\ne: 4\n");
        assert_eq!(docs.len(), 4, "{docs:?}");
        let first = docs[0].as_ref().expect_err("bad flow sequence");
        assert!(first.message.starts_with("invalid YAML"), "{first:?}");
        assert_eq!(docs[1].as_ref().ok(), Some(&serde_json::json!({"b": 2})));
        let third = docs[2].as_ref().expect_err("bad flow mapping");
        assert!(
            third.message.contains("line 7"),
            "lines of the file: {third:?}"
        );
        assert_eq!(docs[3].as_ref().ok(), Some(&serde_json::json!({"e": 4})));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let docs = read("\u{feff}a: 1\n", false);
        assert_eq!(docs.len(), 1);
        assert_eq!(
            docs[0].content.as_ref().ok(),
            Some(&serde_json::json!({"a": 1}))
        );
        let docs = read("\u{feff}{\"a\": 1}", true);
        assert_eq!(
            docs[0].content.as_ref().ok(),
            Some(&serde_json::json!({"a": 1}))
        );
    }

    #[test]
    fn merge_keys_are_resolved() {
        let docs = contents("base: &b {x: 1, y: 2}\nthis:\n  <<: *b\n  y: 3\n");
        assert_eq!(
            docs[0].as_ref().ok(),
            Some(&serde_json::json!({"base": {"x": 1, "y": 2}, "this": {"x": 1, "y": 3}}))
        );
    }

    #[test]
    fn duplicate_keys_and_non_finite_numbers_are_errors() {
        let e = contents("a: 1\na: 2\n").remove(0).expect_err("duplicate");
        assert!(e.message.contains("duplicate field \"a\""), "{e:?}");
        let e = contents("spec:\n  alias: a\n  alias: b\n")
            .remove(0)
            .expect_err("duplicate");
        assert_eq!(e.field.as_deref(), Some("spec.alias"), "{e:?}");
        let e = parse_json(r#"{"spec": {"alias": "a", "alias": "b"}}"#).expect_err("duplicate");
        assert_eq!(e.field.as_deref(), Some("spec.alias"));
        assert!(e.message.contains("duplicate field \"alias\""), "{e:?}");
        for (text, shown) in [
            ("x: {y: [1, .inf]}", "+Inf"),
            ("x: {y: .nan}", "NaN"),
            ("x: {y: -1e400}", "-Inf"),
        ] {
            let e = contents(text).remove(0).expect_err("non-finite");
            assert!(e.message.contains(shown), "{e:?}");
            assert!(
                e.field.as_deref().is_some_and(|f| f.starts_with("x.y")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_1_2_core() {
        let docs = contents(
            "a: no\nb: on\nc: 0X1F\nd: 1_000\ne: 1:20\nf: 0755\ng: y\nh: 2001-12-14\ni: 0x1f\nj: 1.5\nk: ~\nl: true\n",
        );
        assert_eq!(
            docs[0].as_ref().ok(),
            Some(&serde_json::json!({
                "a": "no", "b": "on", "c": "0X1F", "d": "1_000", "e": "1:20", "f": "0755",
                "g": "y", "h": "2001-12-14", "i": 31, "j": 1.5, "k": null, "l": true
            }))
        );
    }

    /// Deep nesting is refused after work proportional to the limit, whatever the size of
    /// the input: flow sequences, flow mappings in an unknown field, a skipped kind, block
    /// style. (Timing is measured by hand, not asserted: see the README.)
    #[test]
    fn deep_nesting_is_refused_at_the_limit() {
        let n = 100_000;
        let cases = [
            format!("models: {}{}", "[".repeat(n), "]".repeat(n)),
            format!("spec: {{unknown: {}", "{a: ".repeat(n)),
            format!(
                "apiVersion: v1\nkind: ConfigMap\ndata: {}",
                "[".repeat(40_000)
            ),
            (0..200).map(|i| format!("{}- \n", " ".repeat(i))).collect(),
            format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        ];
        for text in &cases {
            let e = contents(text).remove(0).expect_err("too deep");
            assert!(
                e.message
                    .starts_with("invalid YAML: nested more than 128 levels"),
                "{e:?}"
            );
        }
        let ok = format!("a: {}1{}", "[".repeat(100), "]".repeat(100));
        assert!(contents(&ok)[0].is_ok());
    }

    #[test]
    fn alias_expansion_is_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = contents(&text).remove(0).expect_err("billion laughs");
        assert!(
            e.message.starts_with("invalid YAML: aliases expand"),
            "{e:?}"
        );
    }

    #[test]
    fn keys_that_resolve_to_numbers_or_booleans_are_spelled_as_json_spells_them() {
        let docs = contents("0x1F: a\nTrue: b\n1.5: c\n0X1F: d\n");
        assert_eq!(
            docs[0].as_ref().ok(),
            Some(&serde_json::json!({"31": "a", "true": "b", "1.5": "c", "0X1F": "d"}))
        );
        let e = contents("m:\n  0xB: 1\n  11: 2\n")
            .remove(0)
            .expect_err("one key twice");
        assert_eq!(e.field.as_deref(), Some("m.11"), "{e:?}");
        assert!(
            contents("~: a\n").remove(0).is_err(),
            "a null key has no JSON form"
        );
    }
}
