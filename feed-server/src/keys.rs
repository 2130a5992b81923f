//! Secrets at rest: the token signing keys (current and the one being rotated out) and the
//! private data folder. Keys come from a file, the environment or the config file, or — in dev
//! mode — are generated once into `<data-dir>/auth-secret` (0600).

use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::ServerError;
use crate::auth::Signer;
use crate::config::AuthConfig;

/// Reads a hex key from `file` (trimmed) or `hex`; `None` when neither is set.
fn configured_key(file: &Option<PathBuf>, hex_text: &str, what: &str) -> Result<Option<Vec<u8>>, ServerError> {
    let text = match file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| ServerError::Config(format!("{what}: reading {}: {e}", p.display())))?,
        None if hex_text.is_empty() => return Ok(None),
        None => hex_text.to_string(),
    };
    let key = hex::decode(text.trim()).map_err(|_| ServerError::Config(format!("{what} is not hex")))?;
    if key.len() < 16 {
        return Err(ServerError::Config(format!("{what} must be at least 16 bytes")));
    }
    Ok(Some(key))
}

/// The signer for `auth`, and whether its key was generated here (dev mode).
pub fn signer(auth: &AuthConfig, data_dir: &Path) -> Result<(Signer, bool), ServerError> {
    let (key, dev) = match configured_key(&auth.secret_file, &auth.secret_hex, "auth secret")? {
        Some(k) => (k, false),
        None => (dev_key(data_dir)?, true),
    };
    let mut s = Signer::new(key);
    if let Some(prev) = configured_key(
        &auth.previous_secret_file,
        &auth.previous_secret_hex,
        "previous auth secret",
    )? {
        s = s.with_previous(prev, auth.previous_secret_valid_until_s);
    }
    Ok((s, dev))
}

/// The dev-mode key kept in `<data-dir>/auth-secret`, created 0600 at first start.
fn dev_key(data_dir: &Path) -> Result<Vec<u8>, ServerError> {
    let path = data_dir.join("auth-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return hex::decode(s.trim()).map_err(|_| ServerError::Config(format!("{} is not hex", path.display())));
    }
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    write_private(&path, &hex::encode(&key))?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(text.as_bytes())
}

/// Creates the data folder readable by its owner only (0700), and narrows an existing one: a
/// private post's text is in RocksDB's WAL and tables.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}
