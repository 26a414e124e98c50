//! `ragstore keys …` and `ragstore projects …`: administration straight against the configured
//! database, SQLite in `--data-dir` or PostgreSQL at `--database-url` (the server may be running;
//! it sees a change within its key memory, 5 s).
//! `ragstore migrate-index`: the vector index copied between engines (the server stopped).

use std::io::Write;
use std::path::{Path, PathBuf};
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

/// `ragstore migrate-index --to-qdrant URL` or `--to-edge DIR`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_qdrant", "to_edge"])))]
pub struct MigrateIndexArgs {
    /// Copy the embedded index of --data-dir into the Qdrant server at this gRPC URL (the
    /// collection serve --qdrant-url uses; created if missing, and it must be empty).
    #[arg(long, value_name = "URL")]
    pub to_qdrant: Option<String>,
    /// Copy the collection of the Qdrant server at --qdrant-url into the embedded index of this
    /// data dir (DIR/index, which must be empty).
    #[arg(long, value_name = "DIR")]
    pub to_edge: Option<PathBuf>,
    /// The data dir whose embedded index --to-qdrant copies (a server on it must be stopped).
    #[arg(long, env = "RAGSTORE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The embedding model, which names the collection: the local model is all-MiniLM-L6-v2,
    /// a remote one is serve's --embedding-model.
    #[arg(
        long,
        env = "RAGSTORE_EMBEDDING_MODEL",
        default_value = "all-MiniLM-L6-v2"
    )]
    pub embedding_model: String,
    /// Points copied per page (each page is one write, then a checkpoint).
    #[arg(long, default_value_t = 256)]
    pub page: usize,
    #[command(flatten)]
    pub qdrant: crate::config::QdrantArgs,
}

/// How a copy into a Qdrant collection names its target in the checkpoint.
pub fn qdrant_target(url: &str, collection: &str) -> String {
    format!("Qdrant {url}, collection {collection}")
}

/// How a copy into the embedded index of data dir `dir` names its target in the checkpoint.
pub fn edge_target(dir: &Path) -> String {
    format!(
        "embedded index {}",
        dir.join(crate::app::INDEX_DIR).display()
    )
}

/// Holds `dir`'s lock as the server does: no server may use it while the index is copied.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = std::fs::File::create(dir.join("ragstore.lock"))
        .with_context(|| format!("creating the lock file in {}", dir.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "{} is in use by a ragstore server: stop it first",
            dir.display()
        )
    })?;
    Ok(lock)
}

/// Copies the index, page by page, resuming an interrupted copy; prints progress and the
/// counts of both sides, which must agree.
pub async fn migrate_index(args: MigrateIndexArgs, out: &mut impl Write) -> anyhow::Result<()> {
    use crate::index::edge::{EdgeIndex, EdgeOptions};
    use crate::index::migrate::copy_points;
    use crate::index::qdrant::QdrantIndex;
    use crate::index::VectorIndex;

    let edge = |dir: PathBuf, dims: usize| async move {
        let options = EdgeOptions {
            maintain_every: None,
            ..EdgeOptions::default()
        };
        tokio::task::spawn_blocking(move || EdgeIndex::open_with(&dir, dims, options))
            .await
            .context("opening the embedded index")?
            .map_err(anyhow::Error::from)
    };
    let (_lock, source, target, name, checkpoint): (
        _,
        Box<dyn VectorIndex>,
        Box<dyn VectorIndex>,
        _,
        _,
    ) = match (args.to_qdrant, args.to_edge) {
        (Some(url), _) => {
            let lock = lock_data_dir(&args.data_dir)?;
            let dir = args.data_dir.join(crate::app::INDEX_DIR);
            let dims = EdgeIndex::stored_dims(&dir)?
                .with_context(|| format!("no embedded index in {}", dir.display()))?;
            let source = edge(dir, dims).await?;
            let target =
                QdrantIndex::open(&args.qdrant.options(&url), &args.embedding_model, dims).await?;
            let name = qdrant_target(&url, target.collection());
            let checkpoint = args.data_dir.join("index-migration.json");
            (lock, Box::new(source), Box::new(target), name, checkpoint)
        }
        (None, Some(dir)) => {
            let url = args.qdrant.url.clone().context(
                "--to-edge copies from the Qdrant server named by --qdrant-url (or \
                     RAGSTORE_QDRANT_URL)",
            )?;
            let lock = lock_data_dir(&dir)?;
            let source =
                QdrantIndex::open_existing(&args.qdrant.options(&url), &args.embedding_model)
                    .await?;
            let target = edge(dir.join(crate::app::INDEX_DIR), source.dims()).await?;
            let name = edge_target(&dir);
            let checkpoint = dir.join("index-migration.json");
            (lock, Box::new(source), Box::new(target), name, checkpoint)
        }
        (None, None) => anyhow::bail!("give --to-qdrant URL or --to-edge DIR"),
    };
    writeln!(out, "copying into {name}")?;
    let mut shown = 0;
    let copied = copy_points(
        source.as_ref(),
        target.as_ref(),
        &name,
        &checkpoint,
        args.page,
        None,
        |n| {
            if n >= shown + 10_000 {
                shown = n;
                tracing::info!(points = n, "copying the index");
            }
        },
    )
    .await?;
    let (from, to) = (
        source.count(None, None).await?,
        target.count(None, None).await?,
    );
    writeln!(
        out,
        "copied {} points{}; the source holds {from}, the target {to}",
        copied.copied,
        if copied.resumed { " (resumed)" } else { "" }
    )?;
    anyhow::ensure!(
        from == to,
        "the counts differ: was the source written to during the copy?"
    );
    Ok(())
}
