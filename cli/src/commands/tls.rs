//! `gru tls ca create` and `gru tls cert create`: the cluster's CA and the certificates it
//! signs (rcgen, ring), as PEM files. Needs no etcd.
//!
//! * The CA: `ca.pem` and `ca-key.pem` (0600), ECDSA P-256, a CA limited to signing
//!   end-entity certificates (path length 0). Its subject is fixed ([`CA_NAME`]), so that a
//!   certificate can be signed from the key and that name alone, without parsing X.509.
//! * A node certificate: the node's name as a DNS name (what agents check against the
//!   name registered in etcd), the `--ip` and `--dns` names, server and client usages.
//! * An operator certificate (`--client NAME`): the name as common name and a
//!   `gru:operator:NAME` URI, no DNS name (it can never pass for a node), client usage only.
//!
//! Invariant: a private key file is created with mode 0600 and never overwritten without
//! `--force`; each node certificate is checked against `ca.pem` before this returns, so a
//! CA directory whose two files do not go together is reported here, not at join.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::args::{TlsCaCommand, TlsCertCommand, TlsCommand};
use crate::exit::Usage;

/// The CA's common name (with organization [`ORGANIZATION`]).
pub const CA_NAME: &str = "gru cluster CA";
const ORGANIZATION: &str = "gru";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
/// Certificates start to be valid this long before they are made (clocks differ).
const BACKDATE: time::Duration = time::Duration::hours(1);

pub fn run(command: TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::Ca(TlsCaCommand::Create { dir, days, force }) => create_ca(&dir, days, force),
        TlsCommand::Cert(TlsCertCommand::Create {
            node,
            client,
            ca_dir,
            ips,
            dns,
            days,
            out,
            force,
        }) => {
            let out = out.unwrap_or_else(|| PathBuf::from("."));
            let subject = match (node, client) {
                (Some(node), None) => Subject::Node {
                    name: node,
                    ips,
                    dns,
                },
                (None, Some(name)) if ips.is_empty() && dns.is_empty() => Subject::Operator(name),
                (None, Some(_)) => {
                    return Err(Usage(
                        "--ip and --dns are for node certificates; an operator's (--client) names no address".into(),
                    )
                    .into());
                }
                _ => return Err(Usage("give --node <name> or --client <name>".into()).into()),
            };
            create_cert(&ca_dir, &subject, days, &out, force)
        }
    }
}

fn ca_params(days: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    params
}

fn ca_name() -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    name.push(DnType::OrganizationName, ORGANIZATION);
    name
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn create_ca(dir: &Path, days: u32, force: bool) -> anyhow::Result<()> {
    if days == 0 {
        return Err(Usage("--days must be at least 1".into()).into());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    refuse_overwrite(
        &[&cert_path, &key_path],
        force,
        "a CA (every certificate it signed would stop being trusted)",
    )?;
    let key = KeyPair::generate().context("cannot make the CA's key")?;
    let cert = ca_params(days)
        .self_signed(&key)
        .context("cannot sign the CA certificate")?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)?;
    eprintln!(
        "CA written: {} (give it to every node and operator: --tls-ca) and {} (mode 0600: keep it off the nodes)",
        cert_path.display(),
        key_path.display()
    );
    eprintln!(
        "next: gru tls cert create --node <name> --ip <address> --ca-dir {}",
        dir.display()
    );
    Ok(())
}

/// What a certificate is for.
#[derive(Debug)]
enum Subject {
    Node {
        name: String,
        ips: Vec<std::net::IpAddr>,
        dns: Vec<String>,
    },
    Operator(String),
}

fn create_cert(
    ca_dir: &Path,
    subject: &Subject,
    days: u32,
    out: &Path,
    force: bool,
) -> anyhow::Result<()> {
    if days == 0 {
        return Err(Usage("--days must be at least 1".into()).into());
    }
    let (ca_cert, ca_key_path) = (ca_dir.join(CA_CERT), ca_dir.join(CA_KEY));
    let ca_key_pem = std::fs::read_to_string(&ca_key_path).with_context(|| {
        format!(
            "cannot read the CA's key {} (make a CA with `gru tls ca create --dir {}`)",
            ca_key_path.display(),
            ca_dir.display()
        )
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| {
        Usage(format!(
            "{}: not a PEM private key: {e}",
            ca_key_path.display()
        ))
    })?;
    // The CA's subject is fixed, so its issuer name and key identifier are rebuilt from
    // the key (checked against ca.pem below).
    let issuer = Issuer::new(ca_params(1), ca_key);

    let mut params = CertificateParams::default();
    let name = match subject {
        Subject::Node { name, ips, dns } => {
            common::keys::check_name("node", name).map_err(|e| Usage(e.to_string()))?;
            let mut sans = vec![dns_name(name)?];
            for extra in dns {
                sans.push(dns_name(extra)?);
            }
            sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
            params.subject_alt_names = sans;
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            name
        }
        Subject::Operator(name) => {
            common::keys::check_name("operator", name).map_err(|e| Usage(e.to_string()))?;
            let uri = format!("gru:operator:{name}")
                .try_into()
                .map_err(|e| Usage(format!("--client {name}: {e}")))?;
            params.subject_alt_names = vec![SanType::URI(uri)];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            name
        }
    };
    params.distinguished_name = {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.as_str());
        dn.push(DnType::OrganizationName, ORGANIZATION);
        dn
    };
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);

    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (cert_path, key_path) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}-key.pem")),
    );
    refuse_overwrite(&[&cert_path, &key_path], force, "a certificate")?;
    let key = KeyPair::generate().context("cannot make the key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)?;
    if let Subject::Node { name, .. } = subject {
        let files = gru_agent::tls::TlsFiles {
            cert: cert_path.clone(),
            key: key_path.clone(),
            ca: ca_cert.clone(),
        };
        gru_agent::tls::check_own_certificate(&files, name).map_err(|e| {
            anyhow::anyhow!(
                "{e} ({} was not made by `gru tls ca create` with this key: sign with openssl from your own CA instead)",
                ca_cert.display()
            )
        })?;
    }
    eprintln!(
        "written: {} and {} (mode 0600), valid {days} days",
        cert_path.display(),
        key_path.display()
    );
    match subject {
        Subject::Node { name, .. } => eprintln!(
            "use: gru join <cluster> --name {name} --tls-cert {} --tls-key {} --tls-ca {}",
            cert_path.display(),
            key_path.display(),
            ca_cert.display()
        ),
        Subject::Operator(_) => eprintln!(
            "use: gru manage --tls-ca {} --tls-cert {} --tls-key {}",
            ca_cert.display(),
            cert_path.display(),
            key_path.display()
        ),
    }
    Ok(())
}

fn dns_name(name: &str) -> anyhow::Result<SanType> {
    let ia5 = name.to_owned().try_into().map_err(|e| {
        Usage(format!(
            "{name:?} cannot be a DNS name in a certificate: {e}"
        ))
    })?;
    Ok(SanType::DnsName(ia5))
}

fn refuse_overwrite(paths: &[&Path], force: bool, what: &str) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(anyhow::anyhow!(
            "{} exists: refusing to overwrite {what}; give --force to replace it",
            existing.display()
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path`, created with mode 0600 when `private` (the mode is set at
/// creation, so the key is never readable by others, even for a moment).
fn write_file(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    options.mode(if private { 0o600 } else { 0o644 });
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if private {
        // An existing file (--force) keeps its mode on open: set it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
