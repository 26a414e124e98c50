//! Public identifiers. They look like OpenAI's (`file-…`, `upload_…`, `part_…`) and carry 128
//! random bits, so they cannot be guessed. They are parsed once at the edge; a string that is not
//! a well-formed id of the right kind never reaches a query.

use rand::Rng;
use std::fmt;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// 22 base62 characters from 128 bits of a CSPRNG (ThreadRng is ChaCha, seeded from the OS).
fn random_suffix() -> String {
    let mut n: u128 = rand::rng().random();
    let mut out = [b'0'; 22];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_suffix()))
            }

            /// `None` unless `s` has this id's prefix followed by 1..=64 characters of
            /// `[A-Za-z0-9_-]`.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                let ok = !rest.is_empty()
                    && rest.len() <= 64
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                ok.then(|| Self(s.to_owned()))
            }

            /// For values read back from our own database.
            pub fn from_db(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// `file-…`
    FileId, "file-");
id_type!(
    /// `upload_…`
    UploadId, "upload_");
id_type!(
    /// `part_…`
    PartId, "part_");
id_type!(
    /// `vs_…`
    VectorStoreId, "vs_");
id_type!(
    /// `vsfb_…`
    FileBatchId, "vsfb_");
id_type!(
    /// `proj_…`: every row belongs to one project.
    ProjectId, "proj_");
id_type!(
    /// `key_…`: an API key's row (never the key itself).
    KeyId, "key_");

impl ProjectId {
    /// The project that holds everything a server without API keys serves.
    pub fn default_project() -> Self {
        Self("proj_default".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_prefix_and_parse_back() {
        let id = FileId::generate();
        assert!(id.as_str().starts_with("file-"));
        assert_eq!(id.as_str().len(), 5 + 22);
        assert_eq!(FileId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn ids_are_not_repeated() {
        let a: std::collections::HashSet<_> = (0..1000).map(|_| UploadId::generate()).collect();
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        assert!(FileId::parse("file-").is_none());
        assert!(FileId::parse("upload_abc").is_none());
        assert!(FileId::parse("file-abc/../x").is_none());
        assert!(FileId::parse("file-abc def").is_none());
        assert!(FileId::parse(&format!("file-{}", "a".repeat(65))).is_none());
        assert!(PartId::parse("part_abc").is_some());
    }
}
