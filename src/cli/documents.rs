//! Turning a file's text into JSON documents as strictly as the API server reads them:
//! duplicate keys, `.inf` / `.nan` and YAML that JSON cannot hold are errors, never a silent
//! "last one wins" or `null`. YAML merge keys (`<<`) are resolved. A UTF-8 byte order mark
//! is ignored.
//!
//! A multi-document YAML file is split at its `---` / `...` markers before parsing, so a
//! syntax error in one document is reported and the documents after it are still read.

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

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

/// Read every document of a file (JSON when `json`, else YAML). Empty documents are left out.
pub fn read(text: &str, json: bool) -> Vec<Document> {
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

fn parse_yaml(chunk: &Chunk<'_>) -> Result<Value, DocumentError> {
    let mut yaml: serde_yaml::Value = match serde_yaml::from_str(chunk.text) {
        Ok(v) => v,
        Err(_) => return Err(yaml_syntax_error(chunk)),
    };
    yaml.apply_merge()
        .map_err(|e| DocumentError::new(None, format!("invalid YAML merge key (<<): {e}")))?;
    check_finite(&yaml, "")?;
    serde_json::to_value(yaml)
        .map_err(|e| DocumentError::new(None, format!("YAML that JSON cannot hold: {e}")))
}

/// The parser's message with line numbers counted in the whole file (the chunk is parsed
/// again behind as many empty lines as precede it: only on this error path).
fn yaml_syntax_error(chunk: &Chunk<'_>) -> DocumentError {
    let padded = format!("{}{}", "\n".repeat(chunk.first_line), chunk.text);
    let message = match serde_yaml::from_str::<serde_yaml::Value>(&padded) {
        Err(e) => e.to_string(),
        Ok(_) => "unreadable document".to_string(),
    };
    DocumentError::new(None, format!("invalid YAML: {}", explain_depth(message)))
}

/// The readers stop 128 levels deep: say what the limit is about.
fn explain_depth(message: String) -> String {
    if message.contains("recursion limit exceeded") {
        format!("nested more than 128 levels ({message})")
    } else {
        message
    }
}

/// `.inf`, `-.inf` and `.nan` have no JSON form (the API server's YAML-to-JSON step fails on
/// them): name the field rather than store `null`.
fn check_finite(value: &serde_yaml::Value, path: &str) -> Result<(), DocumentError> {
    match value {
        serde_yaml::Value::Number(n) => match n.as_f64() {
            Some(f) if !f.is_finite() => {
                let shown = if f.is_nan() {
                    "NaN"
                } else if f > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                Err(DocumentError::new(
                    (!path.is_empty()).then(|| path.to_string()),
                    format!("json: unsupported value: {shown} (use a finite number)"),
                ))
            }
            _ => Ok(()),
        },
        serde_yaml::Value::Sequence(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_finite(item, &format!("{path}[{i}]"))),
        serde_yaml::Value::Mapping(map) => map.iter().try_for_each(|(k, v)| {
            let key = match k {
                serde_yaml::Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other)
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default(),
            };
            let child = if path.is_empty() {
                key
            } else {
                format!("{path}.{key}")
            };
            check_finite(v, &child)
        }),
        serde_yaml::Value::Tagged(t) => check_finite(&t.value, path),
        _ => Ok(()),
    }
}

fn parse_json(text: &str) -> Result<Value, DocumentError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize::<_, StrictValue>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        let message = explain_depth(e.into_inner().to_string());
        DocumentError::new(field, format!("invalid JSON: {message}"))
    })?;
    de.end()
        .map_err(|e| DocumentError::new(None, format!("invalid JSON: {e}")))?;
    Ok(value.0)
}

/// A JSON value whose objects may not repeat a key (`serde_json::Value` keeps the last).
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
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("json: unsupported value: use a finite number"))
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
        while let Some(key) = map.next_key::<String>()? {
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
        assert!(e.message.contains("duplicate"), "{e:?}");
        let e = parse_json(r#"{"spec": {"alias": "a", "alias": "b"}}"#).expect_err("duplicate");
        assert_eq!(e.field.as_deref(), Some("spec.alias"));
        assert!(e.message.contains("duplicate field \"alias\""), "{e:?}");
        for (text, shown) in [("x: {y: [1, .inf]}", "+Inf"), ("x: {y: .nan}", "NaN")] {
            let e = contents(text).remove(0).expect_err("non-finite");
            assert!(e.message.contains(shown), "{e:?}");
            assert!(
                e.field.as_deref().is_some_and(|f| f.starts_with("x.y")),
                "{e:?}"
            );
        }
    }
}
