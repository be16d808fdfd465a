//! `viewport-server release keygen|sign` (issue 13 item 5): signing releases offline. The
//! secret key stays on the release manager's machine (0600, in a folder of their choosing);
//! machines trust the public key with `vpd update --trust-key`. The signature's trusted
//! comment is `vpd_core::release::Release::trusted_comment`, the one vpd checks.

use super::ReleaseCommand;
use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use vpd_core::release::{Release, Version};

pub const KEY_FILE: &str = "release.key";
pub const PUB_FILE: &str = "release.pub";

pub fn run(cmd: ReleaseCommand) -> anyhow::Result<()> {
    match cmd {
        ReleaseCommand::Keygen { out } => keygen(&out),
        ReleaseCommand::Sign { file, key, version, os, arch } => sign(&file, &key, &version, &os, &arch),
    }
}

/// Creates `path` with `bytes`, never replacing a file (or following a link) already there.
fn create_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {} (an existing key is never replaced)", path.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", path.display()))
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (secret, public) = (out.join(KEY_FILE), out.join(PUB_FILE));
    if secret.exists() || public.exists() {
        bail!("{} already holds a release key; choose another folder (a key is never replaced: machines trust it)", out.display());
    }
    let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair().context("generating the key")?;
    let sk_text = sk.to_box(Some("Viewport release signing key: keep it offline")).context("encoding the secret key")?.to_string();
    let pk_text = pk.to_box().context("encoding the public key")?.to_string();
    create_new(&secret, sk_text.as_bytes(), 0o600)?;
    create_new(&public, pk_text.as_bytes(), 0o644)?;
    println!("Wrote {} (secret: keep it offline, never on the server) and {}.", secret.display(), public.display());
    println!("Machines trust it with: vpd update --source URL --trust-key {}", public.display());
    Ok(())
}

fn sign(file: &Path, key: &Path, version: &str, os: &str, arch: &str) -> anyhow::Result<()> {
    let version: Version = version.parse().map_err(anyhow::Error::msg)?;
    let key_text = std::fs::read_to_string(key).with_context(|| format!("reading the key {}", key.display()))?;
    let sk = minisign::SecretKeyBox::from_string(&key_text)
        .and_then(|b| b.into_unencrypted_secret_key())
        .with_context(|| format!("{} is not a release key made by `viewport-server release keygen`", key.display()))?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let release = Release::of(&bytes, version, os, arch);
    // The comment must parse back exactly: an OS or architecture name it would refuse is
    // refused here, before anything is written.
    Release::parse(&release.trusted_comment()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let signature = minisign::sign(None, &sk, std::io::Cursor::new(&bytes), Some(&release.trusted_comment()), Some("Viewport release signature"))
        .context("signing")?;
    let out = file.with_file_name(format!("{}.minisig", file.file_name().and_then(|n| n.to_str()).unwrap_or("release")));
    // Written beside it under a new name, then renamed over any older signature: never
    // through a link, never half-written.
    let tmp = out.with_file_name(format!(".{}.tmp-{}", out.file_name().and_then(|n| n.to_str()).unwrap_or("sig"), std::process::id()));
    create_new(&tmp, signature.to_string().as_bytes(), 0o644)?;
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    println!("Wrote {}: {}", out.display(), release.trusted_comment());
    Ok(())
}
