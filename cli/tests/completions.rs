//! `gru completions <shell>`: the scripts clap_complete generates from gru's own
//! definitions. The bash script is loaded into a real bash and asked to complete, as bash
//! would when the operator presses Tab.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gru"))
        .args(["completions", shell])
        .env_remove("ETCD_ADDR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gru completions {shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What bash offers for `line` (the word under the cursor is the last one, maybe empty),
/// with the script loaded as `source <(gru completions bash)` would.
fn bash_complete(script: &std::path::Path, line: &str) -> Vec<String> {
    let words: Vec<&str> = if line.ends_with(' ') {
        line.split_whitespace().chain([""]).collect()
    } else {
        line.split_whitespace().collect()
    };
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "set -e\n\
         source '{script}'\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE='{line}'\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         _gru gru '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = quoted.join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash could not load or run the completion script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_loads_the_script_and_completes_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("gru.bash");
    std::fs::write(&script, completions("bash")).unwrap();

    let top = bash_complete(&script, "gru ");
    for subcommand in ["create", "config", "join", "manage", "leave", "completions"] {
        assert!(
            top.iter().any(|w| w == subcommand),
            "`gru <Tab>` does not offer {subcommand}: {top:?}"
        );
    }
    let config = bash_complete(&script, "gru config ");
    for subcommand in ["validate", "push", "get"] {
        assert!(
            config.iter().any(|w| w == subcommand),
            "`gru config <Tab>` does not offer {subcommand}: {config:?}"
        );
    }
    let prefix = bash_complete(&script, "gru ma");
    assert_eq!(prefix, vec!["manage".to_owned()], "`gru ma<Tab>`");
    let shells = bash_complete(&script, "gru completions ");
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|w| w == shell), "{shells:?}");
    }
    let flags = bash_complete(&script, "gru join --st");
    assert!(flags.iter().any(|w| w == "--start"), "{flags:?}");
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    let zsh = completions("zsh");
    assert!(
        zsh.starts_with("#compdef gru"),
        "{}",
        &zsh[..zsh.len().min(200)]
    );
    let fish = completions("fish");
    for subcommand in ["create", "config", "join", "manage", "leave", "completions"] {
        assert!(
            zsh.contains(&format!("'{subcommand}:")),
            "zsh lacks {subcommand}"
        );
        assert!(
            fish.contains(&format!("-a \"{subcommand}\"")),
            "fish lacks {subcommand}"
        );
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_gru"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
