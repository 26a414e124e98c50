//! Copying every point of one index into another (`ragstore migrate-index`): the embedded index
//! into a Qdrant server's collection, or back. Points move as they are stored (dense vector,
//! keyword vector, payload), so nothing is embedded or tokenised again.
//!
//! Pages are read in point-id order and written by id, so writing a page twice changes nothing.
//! After each page is written, a checkpoint file records where the next page starts
//! (written to a temporary file, synced and renamed over the old one): a copy interrupted
//! anywhere, even by a kill, resumes from the last checkpoint and re-writes at most one page.
//! The checkpoint is written before the first point, and a copy without one refuses a target
//! that already holds points: points left there from something else (a file deleted since)
//! would come back in searches.

use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, Context as _};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::VectorIndex;
use crate::domain::{Error, Result};

/// Where an interrupted copy goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    /// The target it copies into; a checkpoint of another target is never resumed.
    target: String,
    /// The first point of the next page; `None` before the first page.
    next: Option<Uuid>,
    /// Points copied so far.
    copied: u64,
}

/// What one run of [`copy_points`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Points copied, by this run and those it resumed.
    pub copied: u64,
    /// It went on from an earlier run's checkpoint.
    pub resumed: bool,
    /// Every page was copied (the checkpoint is removed); `false`: stopped after `max_pages`.
    pub done: bool,
}

/// Copies every point of `source` into `target` (named `target_name` in the checkpoint), `page`
/// points at a time, resuming from `checkpoint` if it holds an earlier run's progress for the
/// same target. Stops after `max_pages` pages if given (tests interrupt it so). `progress` is
/// told the total copied after each page.
pub async fn copy_points(
    source: &dyn VectorIndex,
    target: &dyn VectorIndex,
    target_name: &str,
    checkpoint: &Path,
    page: usize,
    max_pages: Option<usize>,
    mut progress: impl FnMut(u64),
) -> Result<Copied> {
    let (mut state, resumed) = match read(checkpoint)? {
        Some(c) if c.target == target_name => (c, true),
        Some(c) => {
            return Err(Error::Internal(anyhow!(
                "{} holds an unfinished copy into {}, not {target_name}: finish that one, or \
                 remove the file to give it up",
                checkpoint.display(),
                c.target
            )))
        }
        None => {
            let there = target.count(None, None).await?;
            if there > 0 {
                return Err(Error::Internal(anyhow!(
                    "{target_name} already holds {there} points: the index is copied into an \
                     empty one (points left there would show up in searches)"
                )));
            }
            let fresh = Checkpoint {
                target: target_name.to_owned(),
                next: None,
                copied: 0,
            };
            write(checkpoint, &fresh)?;
            (fresh, false)
        }
    };
    let mut pages = 0;
    loop {
        if max_pages.is_some_and(|max| pages >= max) {
            return Ok(Copied {
                copied: state.copied,
                resumed,
                done: false,
            });
        }
        let found = source.export_points(state.next, page.max(1)).await?;
        state.copied += found.points.len() as u64;
        target.import_points(found.points).await?;
        pages += 1;
        progress(state.copied);
        match found.next {
            Some(next) => {
                state.next = Some(next);
                write(checkpoint, &state)?;
            }
            None => break,
        }
    }
    std::fs::remove_file(checkpoint)
        .with_context(|| format!("removing {}", checkpoint.display()))?;
    Ok(Copied {
        copied: state.copied,
        resumed,
        done: true,
    })
}

fn read(path: &Path) -> Result<Option<Checkpoint>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading the checkpoint {}", path.display()))
            .map_err(Error::Internal),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the checkpoint atomically and durably: a kill leaves the old one or the new one.
fn write(path: &Path, state: &Checkpoint) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(state).context("checkpoint to JSON")?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
