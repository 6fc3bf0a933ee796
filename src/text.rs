//! Text that reaches a terminal or a review: values from manifests and from the database are
//! printed with control characters escaped, so a value holding a newline or an ANSI escape
//! sequence (a user id, a namespace) cannot fake a line of a plan or hide one. A leaf: the
//! plan's `Display`, the CLI's tables and its errors all use it.

use std::borrow::Cow;

/// Whether a character would change what a terminal or a review shows rather than show
/// itself: C0 and C1 controls, DEL, and the bidirectional overrides and isolates.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character written as an escape (`\n`, `\t`, `\u{1b}`).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}
