//! How to reach etcd: endpoints, credentials and TLS material, as the operator gave them.

use std::fmt;
use std::path::PathBuf;

/// Default etcd endpoint when neither `--etcd` nor `ETCD_ADDR` says otherwise.
pub const DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";

/// Connection settings for etcd. `Debug` never prints the password.
#[derive(Clone, Default)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// PEM file of the CA that signed the members' certificates.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for members that require client certificates.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl EtcdSettings {
    /// Splits a comma-separated endpoint list (`http://a:2379,http://b:2379`), dropping blanks.
    pub fn parse_endpoints(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn endpoints_display(&self) -> String {
        self.endpoints.join(",")
    }
}

impl fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_on_commas_and_drop_blanks() {
        assert_eq!(
            EtcdSettings::parse_endpoints(" http://a:1, ,http://b:2,"),
            vec!["http://a:1".to_owned(), "http://b:2".to_owned()]
        );
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let settings = EtcdSettings {
            password: Some("hunter2".into()),
            ..Default::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
