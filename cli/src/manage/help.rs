//! `help` and `help <command>`, from the grammar's own table, so help cannot drift from
//! what the parser accepts.

use serde_json::json;

use super::grammar::{self, FAMILIES, write_usage};
use super::output::Outcome;

pub fn help(topic: Option<&str>) -> Outcome {
    let Some(topic) = topic else {
        let width = FAMILIES.iter().map(|f| f.verb.len()).max().unwrap_or(0);
        let mut text = String::from("commands (`help <command>` for its usage):\n");
        for family in FAMILIES {
            text.push_str(&format!("  {:width$}  {}\n", family.verb, family.summary));
        }
        text.push_str("Tab completes commands, nodes and services; Up recalls earlier lines.");
        let commands: Vec<_> = FAMILIES
            .iter()
            .map(|f| json!({"command": f.verb, "usage": f.usage, "summary": f.summary}))
            .collect();
        return Outcome::ok(text, json!({ "commands": commands }));
    };
    match grammar::family(topic) {
        Some(family) => {
            let mut text = format!("{}: {}", family.verb, family.summary);
            let _ = write_usage(&mut text, family);
            if !family.details.is_empty() {
                text.push_str("\n\n");
                text.push_str(&wrap(family.details, 88));
            }
            let json = json!({
                "command": family.verb, "usage": family.usage,
                "summary": family.summary, "details": family.details,
            });
            Outcome::ok(text, json)
        }
        None => {
            let mut message = format!("no command `{topic}`");
            if let Some(near) = grammar::nearest(topic, grammar::verbs()) {
                message.push_str(&format!("; did you mean `{near}`?"));
            }
            Outcome::usage(message)
        }
    }
}

/// Greedy word wrap at `width` columns (the details are written as one paragraph).
fn wrap(text: &str, width: usize) -> String {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let Some(line) = lines.last_mut() else { break };
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::output::Status;

    #[test]
    fn help_lists_every_command_and_explains_one() {
        let all = help(None);
        for family in FAMILIES {
            assert!(all.text.contains(family.verb), "{} missing", family.verb);
        }
        let deploy = help(Some("deploy"));
        assert!(deploy.text.contains("usage: deploy"), "{}", deploy.text);
        assert!(deploy.text.contains("nothing changes"), "{}", deploy.text);
        assert!(
            deploy.text.lines().all(|l| l.len() <= 88),
            "{}",
            deploy.text
        );
        let start = help(Some("start"));
        assert!(
            start.text.contains("start agent <node>...|all"),
            "{}",
            start.text
        );
        let unknown = help(Some("deply"));
        assert_eq!(unknown.status, Status::Usage);
        assert_eq!(
            unknown.error.as_deref(),
            Some("no command `deply`; did you mean `deploy`?")
        );
    }

    #[test]
    fn wrapping_keeps_words_whole() {
        assert_eq!(wrap("aa bb cc", 5), "aa bb\ncc");
        assert_eq!(wrap("", 5), "");
    }
}
