//! Who may command the agents, and with which key they sign to each other: the records
//! `gru token` and `gru secret rotate` write to etcd and every agent reads (and watches).
//!
//! * An operator token is an Ed25519 signing key that only its holder has: etcd keeps its
//!   public half ([`TokenRecord`], `/gru/<cluster>/tokens/<name>`), so whoever reads etcd
//!   can check a token's signature but cannot make one. The token string is
//!   `gru:<name>:<64 hex digits of the key's seed>` ([`OperatorToken`]).
//! * The cluster key (`/gru/<cluster>/secret`) signs gossip and liveness proofs. A rotation
//!   ([`KeyRotation`], `/gru/<cluster>/key-rotation`) keeps the previous key accepted for an
//!   overlap window; [`Keyring`] says, as a pure function of the time, which key an agent
//!   signs with and which ones it accepts.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read routes only: the agents' read routes need no credentials at all, so a read
    /// token is refused on every route that changes something.
    Read,
    /// Every route: commands, metric pushes.
    Operate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
        }
    }

    /// `read` or `operate`, as an operator types it.
    pub fn parse(text: &str) -> Option<Role> {
        match text.to_ascii_lowercase().as_str() {
            "read" => Some(Role::Read),
            "operate" => Some(Role::Operate),
            _ => None,
        }
    }

    /// Whether this role may call routes that change state.
    pub fn may_change(self) -> bool {
        self == Role::Operate
    }
}

/// A token as etcd keeps it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's Ed25519 public key, 64 hex digits.
    pub public_key: String,
    pub role: Role,
    /// Milliseconds since the epoch (the clock of the `gru` that made it).
    pub created: u64,
    /// Milliseconds since the epoch; `None`: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl TokenRecord {
    /// Whether the token is past its expiry at `now` (milliseconds since the epoch).
    pub fn expired_at(&self, now: u64) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }
}

/// Prefix of every token string.
pub const TOKEN_PREFIX: &str = "gru:";

/// A parsed token string: its name and its 32-byte seed.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorToken {
    pub name: String,
    pub seed: [u8; 32],
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorToken")
            .field("name", &self.name)
            .field("seed", &"<redacted>")
            .finish()
    }
}

impl OperatorToken {
    /// `gru:<name>:<hex seed>`, what `gru token create` prints once.
    pub fn encode(&self) -> String {
        format!("{TOKEN_PREFIX}{}:{}", self.name, hex::encode(self.seed))
    }

    /// Parses a token string (surrounding blanks and a trailing newline, as in a file, are
    /// ignored). The error says what is wrong without repeating the token.
    pub fn parse(text: &str) -> Result<OperatorToken, String> {
        let text = text.trim();
        let rest = text.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            format!("a gru token starts with {TOKEN_PREFIX:?} (as `gru token create` prints it)")
        })?;
        let (name, seed) = rest
            .rsplit_once(':')
            .ok_or("a gru token is gru:<name>:<64 hex digits>")?;
        crate::keys::check_name("token", name).map_err(|e| e.to_string())?;
        let bytes = hex::decode(seed).map_err(|_| "the token's key is not hexadecimal")?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the token's key is not 64 hex digits long")?;
        Ok(OperatorToken {
            name: name.to_owned(),
            seed,
        })
    }
}

/// How long after `gru secret rotate` agents go on signing with the previous key: every
/// agent learns of the rotation through its etcd watch (milliseconds) and accepts the new
/// key well before any agent signs with it, so no message is refused for its key.
pub const SWITCH_DELAY: Duration = Duration::from_secs(5);
/// Shortest overlap `gru secret rotate` accepts: the switch ([`SWITCH_DELAY`]), then 10 s
/// for messages signed with the previous key just before it and for agents' clocks a few
/// seconds apart (each agent switches and stops accepting by its own clock).
pub const MIN_OVERLAP: Duration = Duration::from_secs(15);
/// The overlap when `--overlap` is not given.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(10 * 60);

/// A key rotation in progress (`/gru/<cluster>/key-rotation`), written with the new key in
/// one transaction. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    /// The key being replaced. Never shown.
    pub previous: String,
    /// From then on agents sign with the new key; before, with the previous one.
    pub send_new_from: u64,
    /// Until then the previous key is accepted; from then on only the new one.
    pub accept_previous_until: u64,
}

impl KeyRotation {
    /// A rotation away from `previous` started at `now`, with `overlap`.
    pub fn starting(previous: &str, now: u64, overlap: Duration) -> KeyRotation {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        KeyRotation {
            previous: previous.to_owned(),
            send_new_from: now.saturating_add(ms(SWITCH_DELAY)),
            accept_previous_until: now.saturating_add(ms(overlap.max(MIN_OVERLAP))),
        }
    }
}

/// The cluster key and the rotation under way, if any: what an agent signs and checks with.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    pub current: String,
    pub rotation: Option<KeyRotation>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &"<redacted>")
            .field(
                "rotation",
                &self
                    .rotation
                    .as_ref()
                    .map(|r| (r.send_new_from, r.accept_previous_until)),
            )
            .finish()
    }
}

impl Keyring {
    pub fn new(current: &str) -> Keyring {
        Keyring {
            current: current.to_owned(),
            rotation: None,
        }
    }

    /// The key to sign with at `now`: the previous one until the switch, then the current.
    pub fn signing_key(&self, now: u64) -> &str {
        match &self.rotation {
            Some(r) if now < r.send_new_from && !r.previous.is_empty() => &r.previous,
            _ => &self.current,
        }
    }

    /// The keys a signature may be made with at `now`: the current one, and the previous
    /// one while the overlap lasts. The key this agent signs with comes first.
    pub fn accepted_keys(&self, now: u64) -> Vec<&str> {
        let mut keys = vec![self.signing_key(now)];
        let previous = self
            .rotation
            .as_ref()
            .filter(|r| now < r.accept_previous_until && !r.previous.is_empty())
            .map(|r| r.previous.as_str());
        for key in [Some(self.current.as_str()), previous]
            .into_iter()
            .flatten()
        {
            if !keys.contains(&key) && !key.is_empty() {
                keys.push(key);
            }
        }
        keys
    }

    /// Whether the overlap of a rotation is still running at `now`.
    pub fn rotating_at(&self, now: u64) -> bool {
        self.rotation
            .as_ref()
            .is_some_and(|r| now < r.accept_previous_until)
    }
}

/// A duration as operators type it: `90s`, `15m`, `12h`, `30d`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90s, 15m, 12h, 30d)"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use s, m, h or d)"
            ));
        }
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotating() -> Keyring {
        Keyring {
            current: "new".into(),
            rotation: Some(KeyRotation::starting(
                "old",
                1_000_000,
                Duration::from_secs(60),
            )),
        }
    }

    #[test]
    fn which_keys_sign_and_are_accepted_over_a_rotation() {
        let ring = rotating();
        let switch = 1_000_000 + SWITCH_DELAY.as_millis() as u64;
        let end = 1_060_000;
        // (time, signing key, accepted keys)
        let cases: &[(u64, &str, &[&str])] = &[
            (1_000_000, "old", &["old", "new"]),
            (switch - 1, "old", &["old", "new"]),
            (switch, "new", &["new", "old"]),
            (end - 1, "new", &["new", "old"]),
            (end, "new", &["new"]),
            (end + 3_600_000, "new", &["new"]),
        ];
        for (now, signs, accepts) in cases {
            assert_eq!(ring.signing_key(*now), *signs, "at {now}");
            assert_eq!(ring.accepted_keys(*now), accepts.to_vec(), "at {now}");
            assert_eq!(ring.rotating_at(*now), *now < end, "at {now}");
        }
        let plain = Keyring::new("only");
        assert_eq!(plain.signing_key(5), "only");
        assert_eq!(plain.accepted_keys(5), vec!["only"]);
    }

    #[test]
    fn an_overlap_shorter_than_the_minimum_is_raised() {
        let r = KeyRotation::starting("old", 0, Duration::from_secs(1));
        assert_eq!(r.accept_previous_until, MIN_OVERLAP.as_millis() as u64);
        assert!(r.send_new_from < r.accept_previous_until);
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        let token = OperatorToken {
            name: "ci.deploy-1".into(),
            seed: [7; 32],
        };
        let text = token.encode();
        assert!(text.starts_with("gru:ci.deploy-1:0707"));
        assert_eq!(
            OperatorToken::parse(&format!(" {text}\n")),
            Ok(token.clone())
        );
        assert!(!format!("{token:?}").contains("0707"));
        for bad in [
            "",
            "0707",
            "gru:name",
            "gru:bad name:0707",
            &format!("gru:n:{}", "zz".repeat(32)),
            &format!("gru:n:{}", "07".repeat(31)),
        ] {
            let err = OperatorToken::parse(bad).expect_err(bad);
            assert!(!err.contains("0707070707"), "{err}");
        }
    }

    #[test]
    fn expiry_and_roles() {
        let record = TokenRecord {
            public_key: String::new(),
            role: Role::Read,
            created: 0,
            expires: Some(100),
        };
        assert!(!record.expired_at(99));
        assert!(record.expired_at(100));
        assert!(!record.role.may_change() && Role::Operate.may_change());
        assert_eq!(Role::parse("OPERATE"), Some(Role::Operate));
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn durations_as_operators_type_them() {
        let cases = [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("15m", Some(900)),
            ("12h", Some(43_200)),
            ("30d", Some(2_592_000)),
            ("1w", None),
            ("m", None),
            ("-5s", None),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text).ok(),
                seconds.map(Duration::from_secs),
                "{text}"
            );
        }
    }
}
