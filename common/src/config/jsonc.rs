//! JSON with comments, as Gru's own README example wrote it (`"DaemonUrl":"local:2375", //...`).
//!
//! Comments (`//` and `/* */`) are blanked out in place, keeping every newline, so a syntax
//! error is still reported at the line and column the operator sees in the editor.

use std::io::Read;

use json_comments::CommentSettings;
use serde_json::Value;

/// Parses `text` as JSON with comments; on failure, says why and where.
pub(crate) fn parse_jsonc(text: &str) -> Result<Value, String> {
    // Editors on some systems start files with a byte-order mark; it is not JSON, and not worth
    // a rejection either.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let stripped = strip_comments(text)?;
    serde_json::from_str(&stripped).map_err(|error| syntax_message(&error))
}

fn strip_comments(text: &str) -> Result<String, String> {
    let mut stripped = Vec::with_capacity(text.len());
    CommentSettings::c_style()
        .strip_comments(text.as_bytes())
        .read_to_end(&mut stripped)
        .map_err(|_| {
            "not valid JSON: a \"/\" that does not start a comment, or a \"/*\" comment that is never closed"
                .to_owned()
        })?;
    // The stripper blanks every byte of a block comment, newlines included; putting the
    // newlines back keeps line numbers true and changes nothing else (both are whitespace).
    for (out, original) in stripped.iter_mut().zip(text.as_bytes()) {
        if *original == b'\n' {
            *out = b'\n';
        }
    }
    // Only ASCII bytes were replaced, by ASCII spaces, so the text is still UTF-8.
    String::from_utf8(stripped).map_err(|_| "not valid UTF-8".to_owned())
}

fn syntax_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let reason = full.strip_suffix(&position).unwrap_or(&full);
    format!(
        "not valid JSON at {}:{}: {reason}",
        error.line(),
        error.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_ignored() {
        let text = "{\n  // line\n  \"a\": 1, /* block\n spanning */ \"b\": \"//not a comment\"\n}";
        let value = parse_jsonc(text).expect("valid JSON with comments");
        assert_eq!(value["a"], 1);
        assert_eq!(value["b"], "//not a comment");
    }

    #[test]
    fn syntax_error_after_block_comment_keeps_its_line() {
        let text = "{\n/* one\ntwo\nthree */\n\"a\": ,\n}";
        let message = parse_jsonc(text).expect_err("missing value");
        assert!(message.starts_with("not valid JSON at 5:6: "), "{message}");
    }

    #[test]
    fn unterminated_comment_is_an_error() {
        assert!(parse_jsonc("{ /* open").is_err());
    }
}
