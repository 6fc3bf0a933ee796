//! YAML out: what `export`, `get -o yaml` and `crd` print. A leaf, like `text.rs`.
//!
//! Manifests are read by YAML 1.1 readers (kubectl, through sigs.k8s.io/yaml over go-yaml;
//! PyYAML) as well as YAML 1.2 ones (this tool), so every string is written to read back as
//! the same string in both: `serde-saphyr`'s writer quotes the words YAML 1.1 resolves to
//! booleans, null, numbers or timestamps (`no`, `N`, `y`, `on`, `Off`, `~`, `0X1F`, `1_000`,
//! `1:20`, `2001-12-14`, `.NaN`), and escapes what a reader would fold, drop or refuse (C0
//! and C1 controls, DEL, NEL, U+2028 and U+2029, U+FEFF, U+FFFE/U+FFFF). Strings stay on one
//! line (no block scalars, whose indentation and chomping rules a hand edit can change), and
//! floats are written as YAML 1.1 floats (`1.0e+20`, never `1e20`, which YAML 1.1 reads as a
//! string).

use serde::Serialize;

/// Why a value could not be written as YAML.
pub type Error = serde_saphyr::SerializeError;

/// `value` as one YAML document (no `---`), readable alike by YAML 1.1 and 1.2 readers.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_saphyr::to_string_with_options(
        value,
        serde_saphyr::ser_options! {
            prefer_block_scalars: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_words_are_quoted_and_controls_escaped() {
        let words = [
            "no",
            "N",
            "y",
            "on",
            "Off",
            "YES",
            "~",
            "null",
            "0X1F",
            "1_000",
            "1:20",
            "1e5",
            "2001-12-14",
            ".NaN",
            "<<",
            "=",
            "-",
            "? x",
            "a: b",
            "#x",
            " lead",
            "trail ",
        ];
        let text =
            to_string(&serde_json::json!({"words": words, "on": "\u{85}\u{2028}\u{7f}\u{feff}"}))
                .expect("yaml");
        for w in ["no", "N", "y", "on", "Off", "YES", "0X1F", "1_000", "1:20"] {
            assert!(text.contains(&format!("\"{w}\"")), "{w} quoted in {text}");
        }
        assert!(
            !text.contains('\u{85}') && !text.contains('\u{2028}'),
            "{text}"
        );
        let back = crate::cli::documents::read(&text, false);
        assert_eq!(
            back[0].content.as_ref().ok(),
            Some(&serde_json::json!({"words": words, "on": "\u{85}\u{2028}\u{7f}\u{feff}"}))
        );
    }

    #[test]
    fn floats_are_yaml_1_1_floats() {
        let text = to_string(&serde_json::json!([1e20, 0.5, 100000.0])).expect("yaml");
        assert_eq!(text, "- 1.0e+20\n- 0.5\n- 100000.0\n");
    }
}
