//! Every filter an index runs, written once for every engine. The embedded engine and the Qdrant
//! server name the same conditions with different types (qdrant-edge re-exports Qdrant's
//! segment types, `qdrant-client` has its own protobuf ones), so each engine implements
//! [`Conditions`] (how to say "this payload path equals this keyword", "all of these", …) and the
//! rules live here: which store, project and files a search sees, how a domain [`Filter`] on
//! attributes becomes conditions, which points lack their keyword vector.

use super::payload::{ATTRIBUTES_KEY, FILE_KEY, PROJECT_KEY, STORE_KEY};
use super::SearchQuery;
use crate::domain::{CompareOp, Error, FileId, Filter, ProjectId, Result, Scalar, VectorStoreId};

/// Bounds of a numeric range; `None`: unbounded on that side.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Bounds {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

/// An engine's filter conditions, as far as ragstore uses them. Paths are Qdrant payload paths
/// (`attributes."lang"`).
pub(crate) trait Conditions {
    type Condition;
    type Filter;

    /// The value at `path` is exactly this string (never a full-text match).
    fn keyword(path: &str, value: &str) -> Result<Self::Condition>;
    /// The value at `path` is one of these strings.
    fn any_keyword(path: &str, values: Vec<String>) -> Result<Self::Condition>;
    fn boolean(path: &str, value: bool) -> Result<Self::Condition>;
    fn range(path: &str, bounds: Bounds) -> Result<Self::Condition>;
    /// The point has its vector `name`.
    fn has_vector(name: &str) -> Self::Condition;
    /// All of `must`, at least one of `should` (if any), none of `must_not`.
    fn filter(
        must: Vec<Self::Condition>,
        should: Vec<Self::Condition>,
        must_not: Vec<Self::Condition>,
    ) -> Self::Filter;
    fn nest(filter: Self::Filter) -> Self::Condition;
}

fn all_of<E: Conditions>(must: Vec<E::Condition>) -> E::Condition {
    E::nest(E::filter(must, Vec::new(), Vec::new()))
}

fn any_of<E: Conditions>(should: Vec<E::Condition>) -> E::Condition {
    E::nest(E::filter(Vec::new(), should, Vec::new()))
}

fn none_of<E: Conditions>(condition: E::Condition) -> E::Condition {
    E::nest(E::filter(Vec::new(), Vec::new(), vec![condition]))
}

/// What one leg of a search may see: its store, its project, its filter, none of its excluded
/// files.
pub(crate) fn search<E: Conditions>(q: &SearchQuery) -> Result<E::Filter> {
    let mut must = vec![
        E::keyword(STORE_KEY, q.store.as_str())?,
        E::keyword(PROJECT_KEY, q.project.as_str())?,
    ];
    if let Some(f) = &q.filter {
        must.push(translate::<E>(f)?);
    }
    let must_not = q
        .exclude_files
        .iter()
        .map(|f| E::keyword(FILE_KEY, f.as_str()))
        .collect::<Result<_>>()?;
    Ok(E::filter(must, Vec::new(), must_not))
}

/// A store's points and/or a file's; `None` (every point) when neither is given.
pub(crate) fn scope<E: Conditions>(
    store: Option<&VectorStoreId>,
    file: Option<&FileId>,
) -> Result<Option<E::Filter>> {
    let mut must = Vec::new();
    if let Some(store) = store {
        must.push(E::keyword(STORE_KEY, store.as_str())?);
    }
    if let Some(file) = file {
        must.push(E::keyword(FILE_KEY, file.as_str())?);
    }
    Ok((!must.is_empty()).then(|| E::filter(must, Vec::new(), Vec::new())))
}

/// A store's points that have no keyword vector yet.
pub(crate) fn without_keywords<E: Conditions>(store: &VectorStoreId) -> Result<E::Filter> {
    Ok(E::filter(
        vec![E::keyword(STORE_KEY, store.as_str())?],
        Vec::new(),
        vec![E::has_vector(super::keyword::SPARSE_VECTOR)],
    ))
}

/// A store's points not marked with `project`: a store's points all belong to its project, so
/// those are points written before projects were recorded.
pub(crate) fn unadopted<E: Conditions>(
    store: &VectorStoreId,
    project: &ProjectId,
) -> Result<E::Filter> {
    Ok(E::filter(
        vec![E::keyword(STORE_KEY, store.as_str())?],
        Vec::new(),
        vec![E::keyword(PROJECT_KEY, project.as_str())?],
    ))
}

/// The payload path of attribute `key`. Quoting lets any key through except one holding `"` or
/// `\`, which Qdrant's path syntax cannot express.
pub(crate) fn attribute_path(key: &str) -> Result<String> {
    if key.contains(['"', '\\']) {
        return Err(Error::invalid(
            format!(
                "Invalid 'filters': key '{key}' cannot be filtered on (it contains '\"' or '\\')."
            ),
            "filters",
        ));
    }
    Ok(format!("{ATTRIBUTES_KEY}.\"{key}\""))
}

/// A number is compared as a range so that a stored `3` and a stored `3.0` both equal `3`.
fn equals<E: Conditions>(path: &str, value: &Scalar) -> Result<E::Condition> {
    match value {
        Scalar::String(s) => E::keyword(path, s),
        Scalar::Bool(b) => E::boolean(path, *b),
        Scalar::Number(x) => E::range(
            path,
            Bounds {
                gte: Some(*x),
                lte: Some(*x),
                ..Bounds::default()
            },
        ),
    }
}

fn one_of<E: Conditions>(path: &str, values: &[Scalar]) -> Result<E::Condition> {
    let mut should = Vec::new();
    let strings: Vec<String> = values
        .iter()
        .filter_map(|v| match v {
            Scalar::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    if !strings.is_empty() {
        should.push(E::any_keyword(path, strings)?);
    }
    for v in values {
        if !matches!(v, Scalar::String(_)) {
            should.push(equals::<E>(path, v)?);
        }
    }
    Ok(match should.len() {
        1 => should.remove(0),
        _ => any_of::<E>(should),
    })
}

/// The domain filter as a condition on `attributes.<key>`. A point without the key fails every
/// comparison and so passes `ne` and `nin`.
pub(crate) fn translate<E: Conditions>(f: &Filter) -> Result<E::Condition> {
    match f {
        Filter::And(children) => Ok(all_of::<E>(
            children.iter().map(translate::<E>).collect::<Result<_>>()?,
        )),
        Filter::Or(children) => Ok(any_of::<E>(
            children.iter().map(translate::<E>).collect::<Result<_>>()?,
        )),
        Filter::Compare { key, op, values } => {
            let path = attribute_path(key)?;
            let Some(first) = values.first() else {
                return Err(Error::invalid(
                    format!("Invalid 'filters': '{key}' needs a value."),
                    "filters",
                ));
            };
            Ok(match op {
                CompareOp::Eq => equals::<E>(&path, first)?,
                CompareOp::Ne => none_of::<E>(equals::<E>(&path, first)?),
                CompareOp::Gt | CompareOp::Gte | CompareOp::Lt | CompareOp::Lte => {
                    let Scalar::Number(x) = first else {
                        return Err(Error::invalid(
                            format!("Invalid 'filters': comparing '{key}' needs a number."),
                            "filters",
                        ));
                    };
                    let x = Some(*x);
                    let mut bounds = Bounds::default();
                    match op {
                        CompareOp::Gt => bounds.gt = x,
                        CompareOp::Gte => bounds.gte = x,
                        CompareOp::Lt => bounds.lt = x,
                        _ => bounds.lte = x,
                    }
                    E::range(&path, bounds)?
                }
                CompareOp::In => one_of::<E>(&path, values)?,
                CompareOp::Nin => none_of::<E>(one_of::<E>(&path, values)?),
            })
        }
    }
}
