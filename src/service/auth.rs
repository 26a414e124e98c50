//! Who a request acts for. A bearer key names its row (`rsk-<id>-<secret>`); the SHA-256 of the
//! presented key is compared with the stored one in constant time. Verified keys, and unknown
//! ones, are remembered for [`KEY_TTL`], so a key revoked by `ragstore keys revoke` (another
//! process) stops working within that time and a request costs no database read.
//!
//! A server with no live key runs open (every request acts for the default project) only where
//! it was allowed to: on a loopback address, or with `--insecure-no-auth`. Anywhere else a
//! server whose keys were all revoked refuses every request rather than opening up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::db::Metadata;
use crate::domain::project::{hash_key, hint_of, key_id_of, same_hash, valid_project_name};
use crate::domain::{Error, KeyId, KeyRecord, ProjectId, ProjectRecord, Quotas, Result, SecretKey};

/// How long a key's verdict (and whether any key exists) is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(5);

/// Keys remembered at most; beyond, the memory is cleared (unknown ids cannot grow it forever).
const MAX_REMEMBERED: usize = 10_000;

/// What the database said recently, by key, for [`KEY_TTL`]; at most [`MAX_REMEMBERED`]
/// entries (beyond, it is cleared: unknown ids cannot grow it forever).
struct Memory<K, V>(Mutex<HashMap<K, (Instant, V)>>);

impl<K: std::hash::Hash + Eq, V: Clone> Memory<K, V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn get(&self, key: &K) -> Option<V> {
        let g = self.0.lock().ok()?;
        let (at, v) = g.get(key)?;
        (at.elapsed() < KEY_TTL).then(|| v.clone())
    }

    fn put(&self, key: K, value: V) {
        if let Ok(mut g) = self.0.lock() {
            if g.len() >= MAX_REMEMBERED {
                g.clear();
            }
            g.insert(key, (Instant::now(), value));
        }
    }
}

/// The project a request acts for, and the key that said so (`None` on an open server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub project: ProjectId,
    pub key: Option<KeyId>,
}

/// Why a request was not let in (both are a 401 `invalid_api_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    NoKey,
    /// The hint of the key presented (its last four characters), never the key.
    BadKey(String),
}

#[derive(Clone)]
pub struct AuthService {
    meta: Arc<dyn Metadata>,
    clock: Arc<dyn Clock>,
    /// Whether a server without live keys may serve without them.
    allow_open: bool,
    keys: Arc<Memory<KeyId, Option<Arc<KeyRecord>>>>,
    any_key: Arc<Memory<(), bool>>,
    default_quotas: Quotas,
}

impl AuthService {
    pub fn new(
        meta: Arc<dyn Metadata>,
        clock: Arc<dyn Clock>,
        allow_open: bool,
        default_quotas: Quotas,
    ) -> Self {
        Self {
            meta,
            clock,
            allow_open,
            keys: Arc::new(Memory::new()),
            any_key: Arc::new(Memory::new()),
            default_quotas,
        }
    }

    /// Whether requests must carry a key.
    pub async fn keys_required(&self) -> Result<bool> {
        if !self.allow_open {
            return Ok(true);
        }
        if let Some(any) = self.any_key.get(&()) {
            return Ok(any);
        }
        let any = self.meta.any_live_key().await?;
        self.any_key.put((), any);
        Ok(any)
    }

    /// The caller a request's `Authorization` value makes it.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Result<Caller, Denied>> {
        if !self.keys_required().await? {
            return Ok(Ok(Caller {
                project: ProjectId::default_project(),
                key: None,
            }));
        }
        let Some(presented) = authorization.and_then(bearer) else {
            return Ok(Err(Denied::NoKey));
        };
        let denied = || Denied::BadKey(hint_of(presented));
        let hash = hash_key(presented);
        let Some(id) = key_id_of(presented) else {
            return Ok(Err(denied()));
        };
        let record = self.key(&id).await?;
        let live = record.filter(|k| k.revoked_at.is_none());
        // The comparison runs whether or not the row exists, over the same 32 bytes.
        let stored = live.as_ref().map_or([0u8; 32], |k| k.hash);
        let matches = same_hash(&stored, &hash);
        match live {
            Some(k) if matches => Ok(Ok(Caller {
                project: k.project_id.clone(),
                key: Some(id),
            })),
            _ => Ok(Err(denied())),
        }
    }

    async fn key(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>> {
        if let Some(k) = self.keys.get(id) {
            return Ok(k);
        }
        let k = self.meta.get_key(id).await?.map(Arc::new);
        self.keys.put(id.clone(), k.clone());
        Ok(k)
    }

    /// The quotas in force for `project`: its own settings over the server's defaults.
    pub async fn quotas(&self, project: &ProjectId) -> Result<Quotas> {
        let own = self
            .meta
            .find_project(project.as_str())
            .await?
            .map(|p| p.quotas)
            .unwrap_or_default();
        Ok(self.default_quotas.with(&own))
    }

    /// The quota of stored bytes, refused early when `adding` bytes would break it (the
    /// database checks again, atomically, when the file row is written).
    pub async fn check_room(&self, project: &ProjectId, adding: u64) -> Result<i64> {
        let max = self.quotas(project).await?.stored_bytes;
        let used = self.meta.stored_bytes(project).await?;
        let adding = i64::try_from(adding).unwrap_or(i64::MAX);
        if used.saturating_add(adding) > max {
            return Err(Error::QuotaExceeded {
                quota: crate::domain::Quota::StoredBytes,
                limit: max,
            });
        }
        Ok(max)
    }

    // --- administration (the `keys` and `projects` commands) -------------------------------

    /// A new key for the project named `project` (created if there is none); the key in the
    /// clear is returned once and never stored.
    pub async fn create_key(
        &self,
        project: &str,
        name: Option<String>,
    ) -> Result<(KeyRecord, ProjectRecord, SecretKey)> {
        let project = match self.meta.find_project(project).await? {
            Some(p) => p,
            None if valid_project_name(project) => {
                self.meta.ensure_project(project, self.clock.now()).await?
            }
            None => {
                return Err(Error::invalid(
                    format!(
                        "{project:?} is not a project name: use 1 to 64 letters, digits, '-', '_' or '.'"
                    ),
                    "project",
                ))
            }
        };
        let id = KeyId::generate();
        let secret = SecretKey::generate(&id);
        let record = KeyRecord {
            id,
            project_id: project.id.clone(),
            name,
            hash: secret.hash(),
            hint: secret.hint(),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        self.meta.insert_key(&record).await?;
        Ok((record, project, secret))
    }
}

/// The key of `Bearer <key>` (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
