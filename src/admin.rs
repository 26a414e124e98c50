//! `ragstore keys …` and `ragstore projects …`: administration straight against the configured
//! database, SQLite in `--data-dir` or PostgreSQL at `--database-url` (the server may be running;
//! it sees a change within its key memory, 5 s).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::db::Metadata;
use crate::domain::{KeyId, ProjectRecord, QuotaOverrides, Quotas};
use crate::service::auth::AuthService;

/// Where the metadata lives (the server's `--database-url`, or else its `--data-dir`).
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The server's data directory (its database is `ragstore.db` in it).
    #[arg(long, env = "RAGSTORE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The server's PostgreSQL database, if it keeps its metadata there.
    #[arg(long, env = "RAGSTORE_DATABASE_URL", hide_env_values = true, value_parser = crate::config::parse_database_url)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key for a project (created if it does not exist); prints the key once.
    Create {
        /// The project's name (or id).
        #[arg(long)]
        project: String,
        /// A label for the key, shown in `keys list`.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List keys (never the keys themselves: id, project, label, last four characters).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by its id (`key_…`); requests with it are refused within 5 seconds.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// List projects with their quotas and the bytes they store.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// The server's default quotas (its flags and environment), shown where a project has
        /// none of its own.
        #[command(flatten)]
        defaults: crate::config::QuotaArgs,
    },
    /// Set a project's quotas; `default` puts one back to the server's default.
    SetQuota {
        /// The project's name (or id).
        project: String,
        /// Bytes of files it may store (e.g. 10GB, 500MiB).
        #[arg(long)]
        stored_bytes: Option<String>,
        /// Files one of its vector stores may hold.
        #[arg(long)]
        files_per_store: Option<String>,
        /// Vector stores it may hold.
        #[arg(long)]
        stores: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

async fn open(db: &DbArgs) -> anyhow::Result<(Arc<dyn Metadata>, AuthService)> {
    if db.database_url.is_none() {
        std::fs::create_dir_all(&db.data_dir)
            .with_context(|| format!("creating data dir {}", db.data_dir.display()))?;
    }
    let meta = crate::db::open(
        db.database_url.as_deref(),
        &db.data_dir.join("ragstore.db"),
        None,
    )
    .await?
    .meta;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let auth = AuthService::new(meta.clone(), clock, true, Quotas::DEFAULT);
    Ok((meta, auth))
}

/// `2026-12-02 20:15Z`
fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%MZ").to_string(),
    )
}

pub async fn keys(
    cmd: KeysCommand,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create { project, name, db } => {
            let (_, auth) = open(&db).await?;
            let (key, project, secret) = auth.create_key(&project, name).await?;
            writeln!(out, "{}", secret.as_str())?;
            writeln!(
                err,
                "Created {} for project {} ({}). This is the only time the key is shown: \
                 it is stored hashed.",
                key.id, project.name, project.id
            )?;
        }
        KeysCommand::List { db } => {
            let (meta, _) = open(&db).await?;
            let projects = meta.list_projects().await?;
            let name_of = |id: &crate::domain::ProjectId| {
                projects
                    .iter()
                    .find(|p| &p.id == id)
                    .map_or_else(|| id.to_string(), |p| p.name.clone())
            };
            writeln!(
                out,
                "{:<27} {:<16} {:<16} {:<6} {:<18} REVOKED",
                "ID", "PROJECT", "NAME", "KEY", "CREATED"
            )?;
            for k in meta.list_keys().await? {
                writeln!(
                    out,
                    "{:<27} {:<16} {:<16} {:<6} {:<18} {}",
                    k.id.as_str(),
                    name_of(&k.project_id),
                    k.name.as_deref().unwrap_or("-"),
                    k.hint,
                    when(k.created_at),
                    k.revoked_at.map_or_else(|| "-".to_owned(), when)
                )?;
            }
        }
        KeysCommand::Revoke { id, db } => {
            let (meta, _) = open(&db).await?;
            let key =
                KeyId::parse(&id).with_context(|| format!("{id:?} is not a key id (key_…)"))?;
            if !meta.revoke_key(&key, SystemClock.now()).await? {
                anyhow::bail!("no live key {id}");
            }
            writeln!(
                err,
                "Revoked {id}; a running server refuses it within 5 seconds."
            )?;
        }
    }
    Ok(())
}

pub async fn projects(cmd: ProjectsCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match cmd {
        ProjectsCommand::List { db, defaults } => {
            let defaults = defaults.quotas();
            let (meta, _) = open(&db).await?;
            writeln!(
                out,
                "{:<27} {:<16} {:>16} {:>26} {:>18} {:>18}",
                "ID", "NAME", "STORED BYTES", "QUOTA BYTES", "FILES/STORE", "STORES"
            )?;
            for p in meta.list_projects().await? {
                let used = meta.stored_bytes(&p.id).await?;
                let show = |own: Option<i64>, default: i64| {
                    own.map_or_else(|| format!("{default} (default)"), |v| v.to_string())
                };
                writeln!(
                    out,
                    "{:<27} {:<16} {:>16} {:>26} {:>18} {:>18}",
                    p.id.as_str(),
                    p.name,
                    used,
                    show(p.quotas.stored_bytes, defaults.stored_bytes),
                    show(p.quotas.files_per_store, defaults.files_per_store),
                    show(p.quotas.stores, defaults.stores),
                )?;
            }
        }
        ProjectsCommand::SetQuota {
            project,
            stored_bytes,
            files_per_store,
            stores,
            db,
        } => {
            let (meta, _) = open(&db).await?;
            let current = meta
                .find_project(&project)
                .await?
                .with_context(|| format!("no project {project:?}"))?;
            let setting =
                |v: Option<String>, own: Option<i64>, bytes: bool| -> anyhow::Result<Option<i64>> {
                    match v.as_deref() {
                        None => Ok(own),
                        Some("default") => Ok(None),
                        Some(s) => {
                            let n = if bytes {
                                crate::config::parse_bytes(s).map_err(anyhow::Error::msg)?
                            } else {
                                s.parse::<u64>()
                                    .with_context(|| format!("{s:?} is not a count"))?
                            };
                            Ok(Some(i64::try_from(n).context("too large")?))
                        }
                    }
                };
            let quotas = QuotaOverrides {
                stored_bytes: setting(stored_bytes, current.quotas.stored_bytes, true)?,
                files_per_store: setting(files_per_store, current.quotas.files_per_store, false)?,
                stores: setting(stores, current.quotas.stores, false)?,
            };
            meta.set_project_quotas(&current.id, &quotas).await?;
            let p = ProjectRecord { quotas, ..current };
            let show = |v: Option<i64>| v.map_or_else(|| "default".to_owned(), |n| n.to_string());
            writeln!(
                out,
                "{} ({}): stored bytes {}, files per store {}, stores {}",
                p.name,
                p.id,
                show(p.quotas.stored_bytes),
                show(p.quotas.files_per_store),
                show(p.quotas.stores)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::when(0), "1970-01-01 00:00Z");
        assert_eq!(super::when(1_796_242_513), "2026-12-02 20:15Z");
    }
}
