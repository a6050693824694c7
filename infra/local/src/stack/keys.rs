//! Access-token keys: the signing key (given, the state directory's development key, or a
//! fresh one) goes into Secrets Manager (moto serves every service on one port) for
//! api-auth to read as on AWS; the JWKS goes to the verifying functions.

use std::path::Path;

use anyhow::Context as _;
use aws_config::SdkConfig;
use shared::auth::{Jwks, SigningKey};

use super::{StackOptions, SIGNING_KEY_FILE, SIGNING_KEY_SECRET_NAME};
use crate::moto;

/// The signing key, put where api-auth reads it, and the JWKS that verifies its tokens.
pub(super) struct AccessKeys {
    pub(super) signing_key: SigningKey,
    /// Where the signing key came from (the banner).
    pub(super) source: String,
    pub(super) jwks: Jwks,
}

impl AccessKeys {
    /// Puts the signing key of `options` into the Secrets Manager at `secrets_endpoint`.
    pub(super) async fn publish(
        options: &StackOptions,
        sdk: &SdkConfig,
        secrets_endpoint: &str,
    ) -> anyhow::Result<Self> {
        let (signing_key, source) = signing_key(options)?;
        let secrets = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(sdk)
                .endpoint_url(secrets_endpoint)
                .build(),
        );
        moto::put_signing_key(&secrets, SIGNING_KEY_SECRET_NAME, &signing_key).await?;
        let jwks = Jwks::new(
            std::iter::once(signing_key.public_key())
                .chain(options.previous_public_keys.iter().cloned())
                .collect(),
        )
        .context("the JWKS of the signing key and the previous public keys")?;
        Ok(Self {
            signing_key,
            source,
            jwks,
        })
    }
}

/// The signing key of `options`: given, else the development key of the state directory
/// (created on the first start, reused after), else (in memory) a fresh one. Also says
/// where it came from, for the banner.
pub(super) fn signing_key(options: &StackOptions) -> anyhow::Result<(SigningKey, String)> {
    if let Some(key) = &options.signing_key {
        return Ok((key.clone(), format!("given key {}", key.kid())));
    }
    if options.in_memory {
        let key = SigningKey::generate("local-memory")?;
        return Ok((key, "fresh in-memory key".to_owned()));
    }
    let path = options.state_dir.join(SIGNING_KEY_FILE);
    let key = match std::fs::read_to_string(&path) {
        Ok(json) => SigningKey::from_jwk_json(&json)
            .with_context(|| format!("reading the signing key {}", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&options.state_dir)
                .with_context(|| format!("creating {}", options.state_dir.display()))?;
            let kid = format!("local-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
            let key = SigningKey::generate(&kid)?;
            write_private_file(&path, &key.to_private_jwk_json())?;
            key
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", path.display()));
        }
    };
    Ok((key, format!("development key {}", path.display())))
}

/// Writes `contents` to a new file only its owner can read.
fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
