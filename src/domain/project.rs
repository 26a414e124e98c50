//! Projects, their API keys and their quotas. Every object belongs to one project; a key acts
//! for exactly one.

use sha2::{Digest, Sha256};
use std::fmt;

use super::{KeyId, ProjectId};

/// A project: a name, and the quotas set for it (`None` = the server's default).
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRecord {
    pub id: ProjectId,
    pub name: String,
    pub created_at: i64,
    pub quotas: QuotaOverrides,
}

/// Per-project quota settings; each `None` falls back to the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaOverrides {
    pub stored_bytes: Option<i64>,
    pub files_per_store: Option<i64>,
    pub stores: Option<i64>,
}

/// The quotas in force for one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Bytes of live files (not deleted) the project may hold.
    pub stored_bytes: i64,
    /// Files one vector store may hold.
    pub files_per_store: i64,
    /// Vector stores (not deleted) the project may hold.
    pub stores: i64,
}

impl Quotas {
    /// OpenAI's per-project storage (2.5 TB); 10,000 files per vector store as on OpenAI; and
    /// 10,000 vector stores.
    pub const DEFAULT: Quotas = Quotas {
        stored_bytes: 2_500_000_000_000,
        files_per_store: 10_000,
        stores: 10_000,
    };

    /// These defaults with a project's own settings over them.
    pub fn with(self, o: &QuotaOverrides) -> Quotas {
        Quotas {
            stored_bytes: o.stored_bytes.unwrap_or(self.stored_bytes),
            files_per_store: o.files_per_store.unwrap_or(self.files_per_store),
            stores: o.stores.unwrap_or(self.stores),
        }
    }
}

/// Which quota a request would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    StoredBytes,
    FilesPerStore,
    Stores,
}

impl Quota {
    pub fn describe(self, limit: i64) -> String {
        match self {
            Quota::StoredBytes => format!(
                "This project's files would exceed its storage quota of {limit} bytes. \
                 Delete files you no longer need, or ask the operator to raise the quota."
            ),
            Quota::FilesPerStore => format!(
                "A vector store of this project may hold at most {limit} files. Detach files \
                 you no longer need, or ask the operator to raise the quota."
            ),
            Quota::Stores => format!(
                "This project may have at most {limit} vector stores. Delete stores you no \
                 longer need, or ask the operator to raise the quota."
            ),
        }
    }
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub project_id: ProjectId,
    pub name: Option<String>,
    /// SHA-256 of the whole key.
    pub hash: [u8; 32],
    /// The key's last four characters, to tell keys apart in listings.
    pub hint: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A key in the clear, as shown once when it is created: `rsk-<key id suffix>-<secret>`.
/// The secret carries 256 random bits; the id lets the server find the one row to compare.
pub struct SecretKey(String);

impl SecretKey {
    const PREFIX: &'static str = "rsk-";

    /// A new key for the key row `id`.
    pub fn generate(id: &KeyId) -> Self {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let suffix = id.as_str().trim_start_matches(KeyId::PREFIX);
        Self(format!("{}{suffix}-{secret}", Self::PREFIX))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hint(&self) -> String {
        hint_of(&self.0)
    }

    pub fn hash(&self) -> [u8; 32] {
        hash_key(&self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// The id of the key row a presented key names, if it is shaped like one of ours.
pub fn key_id_of(presented: &str) -> Option<KeyId> {
    let rest = presented.strip_prefix(SecretKey::PREFIX)?;
    let (suffix, secret) = rest.split_once('-')?;
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    KeyId::parse(&format!("{}{suffix}", KeyId::PREFIX))
}

pub fn hash_key(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

/// The last four characters, e.g. `…3f9a`.
pub fn hint_of(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Compares two digests in time independent of where they differ.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// A project name: 1 to 64 characters of letters, digits, `-`, `_` and `.`.
pub fn valid_project_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_row_and_hashes_to_what_is_stored() {
        let id = KeyId::generate();
        let key = SecretKey::generate(&id);
        assert!(key.as_str().starts_with("rsk-"));
        assert_eq!(key_id_of(key.as_str()), Some(id));
        assert!(same_hash(&key.hash(), &hash_key(key.as_str())));
        assert!(!same_hash(&key.hash(), &hash_key("rsk-other")));
        assert_eq!(key.hint().chars().count(), 5);
        assert!(!format!("{key:?}").contains(key.as_str()));
    }

    #[test]
    fn keys_of_other_shapes_name_no_row() {
        assert_eq!(key_id_of("sk-abc"), None);
        assert_eq!(key_id_of("rsk-abc"), None);
        assert_eq!(key_id_of("rsk-abc-1234"), None);
        assert_eq!(key_id_of(&format!("rsk-a/b-{}", "0".repeat(64))), None);
    }

    #[test]
    fn project_settings_override_defaults() {
        let q = Quotas::DEFAULT.with(&QuotaOverrides {
            stores: Some(3),
            ..Default::default()
        });
        assert_eq!(q.stores, 3);
        assert_eq!(q.stored_bytes, Quotas::DEFAULT.stored_bytes);
    }
}
