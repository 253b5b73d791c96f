//! Scripts: `gru manage -c "use c; deploy"` and a script on standard input, split into the
//! lines the shell runs one after the other.

/// The commands of a script: split on newlines and `;`, blanks trimmed, empty pieces and
/// `#` comments (to the end of their line) dropped.
pub fn commands(script: &str) -> Vec<String> {
    script
        .lines()
        .map(|line| line.split_once('#').map_or(line, |(code, _)| code))
        .flat_map(|line| line.split(';'))
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_on_semicolons_and_lines_without_comments() {
        let cases: [(&str, &[&str]); 5] = [
            (
                "use c; deploy; start agent all",
                &["use c", "deploy", "start agent all"],
            ),
            ("use c\n\n  list nodes  \n", &["use c", "list nodes"]),
            (
                "# setup\nuse c # the test cluster\n;;status;",
                &["use c", "status"],
            ),
            ("", &[]),
            (" ; ;\n", &[]),
        ];
        for (script, expected) in cases {
            assert_eq!(commands(script), expected, "{script:?}");
        }
    }
}
