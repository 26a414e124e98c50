//! A [`VectorIndex`] on a Qdrant server, over gRPC (`qdrant-client`), for deployments that
//! outgrow one machine (`--qdrant-url`). It behaves as the embedded index does: the same tests
//! run on both (`tests/it/index_contract.rs`).
//!
//! - **One collection per embedding model**, named `{prefix}_{model}_{dims}` (see
//!   [`collection_name`]; the prefix is `--qdrant-collection-prefix`, `ragstore` by default),
//!   holding every store's points with the payload layout of [`super`]. It is created at open if
//!   missing, with the unnamed dense vector (cosine, the model's dimensions) and the sparse
//!   vector `bm25` (`Modifier::Idf`: the server applies IDF, and the sparse vectors are the
//!   embedded engine's, from [`super::keyword`], so points move between engines as they are).
//!   An existing collection whose vectors differ is refused at open, never written to.
//! - **Payload indexes**: `vector_store_id` (keyword, `is_tenant`: the server keeps each store's
//!   points together), `project_id` and `file_id` (keyword), created at open. Attribute keys
//!   are users' own and unknown in advance, so each key gets an index on `attributes."<key>"`
//!   when a write first carries it (keyword for strings, float for numbers, bool for booleans;
//!   the first kind seen wins, and values of another kind under the key still filter exactly,
//!   read from the payload). Keys the server already indexes are read at open and re-read before
//!   creating one, so replicas never replace each other's index with another kind. At most
//!   [`MAX_ATTRIBUTE_INDEXES`] keys are indexed; filters on more read the payload.
//! - **Writes** wait until applied (`wait = true`) and are ordered `medium` (through a shard's
//!   leader), so a write is visible to every later search once it returns. On a cluster, writes
//!   need `write_consistency_factor` replicas (`--qdrant-write-consistency`) and reads ask enough
//!   replicas to overlap them (`replication_factor - write_consistency_factor + 1`).
//! - **Keyword vectors for older points** (`index_keywords`) are set with `update_vectors`,
//!   which never creates a point: checked on the 1.18.3 server, a batch naming a deleted point
//!   fails with `NotFound` after setting the others, so the batch is re-sent without the points
//!   that are gone, and a point deleted meanwhile stays deleted.
//! - **Upkeep** is the server's own (its optimizers build HNSW graphs and merge segments in the
//!   background); [`VectorIndex::maintain`] only waits until the collection is green (its
//!   optimizations done), which benchmarks use to measure a built index.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use async_trait::async_trait;
use qdrant_client::qdrant::{
    self, payload_index_params::IndexParams, point_id::PointIdOptions, r#match::MatchValue,
    read_consistency, vector_output, vectors_config, vectors_output, with_payload_selector,
    AcornSearchParams, CollectionStatus, Condition, CountPoints, CreateCollection,
    CreateFieldIndexCollection, DeletePoints, Distance, FieldType, GetPoints, HnswConfigDiff,
    KeywordIndexParams, Modifier, NamedVectors, OptimizersConfigDiff, PayloadIncludeSelector,
    PayloadIndexParams, PointId, PointStruct, PointVectors, Query, QueryPoints, ReadConsistency,
    RepeatedStrings, ScrollPoints, SearchParams, SetPayloadPoints, SparseVectorConfig,
    SparseVectorParams, UpdateCollection, UpdatePointVectors, UpsertPoints, Vector, VectorInput,
    VectorParams, VectorsConfig, WithPayloadSelector, WriteOrdering, WriteOrderingType,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::filter::{self, attribute_path, Bounds, Conditions};
use super::keyword::{Keywords, Sparse, SPARSE_VECTOR};
use super::payload::{self, ATTRIBUTES_KEY, FILE_KEY, PROJECT_KEY, STORE_KEY, TEXT_KEY};
use super::{ExportPage, Hit, KeywordRound, Leg, Point, SearchQuery, StoredPoint, VectorIndex};
use crate::domain::{AttrValue, Attributes, Error, FileId, ProjectId, Result, VectorStoreId};

/// Attribute keys indexed at most; past this, filters on further keys read the payload.
pub const MAX_ATTRIBUTE_INDEXES: usize = 64;

/// The client library's version: a server older than this (minor) may lack what it sends.
const CLIENT_MINOR: (u64, u64) = (1, 18);

/// How to reach the server and how to lay out a new collection.
#[derive(Debug, Clone)]
pub struct QdrantOptions {
    /// The gRPC endpoint, e.g. `http://127.0.0.1:6334`.
    pub url: String,
    pub api_key: Option<String>,
    /// Collections are named `{prefix}_{model}_{dims}`.
    pub collection_prefix: String,
    /// For a new collection; `None`: the server's default.
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub write_consistency_factor: Option<u32>,
    /// The longest one request may take (a delete of a large file included).
    pub timeout: Duration,
    /// For a new collection: segments with more than this many KiB of vectors get an HNSW
    /// graph; `None`: the server's default (tests lower it to build graphs on small data).
    pub indexing_threshold_kb: Option<u64>,
    /// For a new collection: below this many KiB of candidates a filtered search scans instead
    /// of walking the graph; `None`: the server's default.
    pub full_scan_threshold_kb: Option<u64>,
}

impl QdrantOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: None,
            collection_prefix: "ragstore".into(),
            shard_number: None,
            replication_factor: None,
            write_consistency_factor: None,
            timeout: Duration::from_secs(60),
            indexing_threshold_kb: None,
            full_scan_threshold_kb: None,
        }
    }
}

/// `{prefix}_{model}_{dims}`, lower-cased, every character but ASCII letters, digits, `-` and
/// `_` replaced by `_`: `ragstore_all-minilm-l6-v2_384`.
pub fn collection_name(prefix: &str, model: &str, dims: usize) -> String {
    format!("{prefix}_{model}_{dims}")
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect()
}

pub struct QdrantIndex {
    client: Qdrant,
    collection: String,
    dims: usize,
    keywords: Keywords,
    /// Attribute keys the collection indexes, with their index's kind.
    attribute_indexes: Mutex<HashMap<String, FieldType>>,
    /// How many replicas a read asks; `None` on a collection without replicas.
    read_consistency: Option<ReadConsistency>,
}

impl std::fmt::Debug for QdrantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantIndex")
            .field("collection", &self.collection)
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

/// A server error, classified: a request the server refuses as malformed would be refused
/// again; anything else (unreachable, overloaded, a timeout, a node down, a full disk) may pass.
fn server(e: QdrantError) -> Error {
    use tonic::Code;
    let text = e.to_string();
    if text.contains("No space left on device") {
        return Error::out_of_space(format!("vector index: Qdrant: {text}"));
    }
    let permanent = match &e {
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            Code::InvalidArgument
                | Code::NotFound
                | Code::AlreadyExists
                | Code::OutOfRange
                | Code::Unimplemented
        ),
        QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => false,
        _ => true,
    };
    let e = anyhow!("vector index: Qdrant: {text}");
    if permanent {
        Error::Internal(e)
    } else {
        Error::Unavailable(e)
    }
}

fn is_not_found(e: &QdrantError) -> bool {
    matches!(e, QdrantError::ResponseError { status } if status.code() == tonic::Code::NotFound)
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow!("vector index: Qdrant: {e}"))
}

fn wait() -> Option<bool> {
    Some(true)
}

fn ordering() -> Option<WriteOrdering> {
    Some(WriteOrdering {
        r#type: WriteOrderingType::Medium.into(),
    })
}

fn uuid_of(id: Option<PointId>) -> Result<Uuid> {
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Uuid(s)) => {
            Uuid::parse_str(&s).map_err(|e| bad(format!("point id {s}: {e}")))
        }
        other => Err(bad(format!("unexpected point id {other:?}"))),
    }
}

fn json(payload: HashMap<String, qdrant::Value>) -> Map<String, Value> {
    Map::from(Payload::from(payload))
}

fn dense(v: Vec<f32>) -> Vector {
    Vector::new_dense(v)
}

fn sparse(s: Sparse) -> Vector {
    Vector::new_sparse(s.indices, s.values)
}

/// A point's vectors: the unnamed dense one and, if it has one, its keyword vector.
fn vectors(vector: Vec<f32>, keywords: Option<Sparse>) -> qdrant::Vectors {
    let mut named = HashMap::from([(String::new(), dense(vector))]);
    if let Some(k) = keywords {
        named.insert(SPARSE_VECTOR.to_owned(), sparse(k));
    }
    NamedVectors { vectors: named }.into()
}

/// The kind of payload index a value of an attribute gets.
fn index_kind(value: &AttrValue) -> FieldType {
    match value {
        AttrValue::String(_) => FieldType::Keyword,
        AttrValue::Number(_) => FieldType::Float,
        AttrValue::Bool(_) => FieldType::Bool,
    }
}

/// The attribute key a payload index path names (`attributes."lang"` or `attributes.lang`).
fn attribute_of_path(path: &str) -> Option<String> {
    let key = path.strip_prefix(ATTRIBUTES_KEY)?.strip_prefix('.')?;
    Some(
        key.strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or(key)
            .to_owned(),
    )
}

/// Qdrant server's conditions: `qdrant-client`'s protobuf types.
struct ServerConditions;

impl Conditions for ServerConditions {
    type Condition = Condition;
    type Filter = qdrant::Filter;

    fn keyword(path: &str, value: &str) -> Result<Condition> {
        // Said outright: the client's `From<String>` makes a string with a space a full-text
        // match.
        Ok(Condition::matches(
            path,
            MatchValue::Keyword(value.to_owned()),
        ))
    }

    fn any_keyword(path: &str, values: Vec<String>) -> Result<Condition> {
        Ok(Condition::matches(
            path,
            MatchValue::Keywords(RepeatedStrings { strings: values }),
        ))
    }

    fn boolean(path: &str, value: bool) -> Result<Condition> {
        Ok(Condition::matches(path, MatchValue::Boolean(value)))
    }

    fn range(path: &str, b: Bounds) -> Result<Condition> {
        Ok(Condition::range(
            path,
            qdrant::Range {
                gt: b.gt,
                gte: b.gte,
                lt: b.lt,
                lte: b.lte,
            },
        ))
    }

    fn has_vector(name: &str) -> Condition {
        Condition::has_vector(name)
    }

    fn filter(
        must: Vec<Condition>,
        should: Vec<Condition>,
        must_not: Vec<Condition>,
    ) -> qdrant::Filter {
        qdrant::Filter {
            must,
            should,
            must_not,
            ..qdrant::Filter::default()
        }
    }

    fn nest(filter: qdrant::Filter) -> Condition {
        Condition::from(filter)
    }
}

impl QdrantIndex {
    /// Connects to the server and opens the collection of `model` (`dims` dimensions), creating
    /// it and its payload indexes if missing; refuses a collection laid out otherwise.
    pub async fn open(options: &QdrantOptions, model: &str, dims: usize) -> Result<Self> {
        let collection = collection_name(&options.collection_prefix, model, dims);
        let client = connect(options).await?;
        if !client
            .collection_exists(&collection)
            .await
            .map_err(server)?
        {
            let created = client
                .create_collection(new_collection(&collection, dims, options))
                .await;
            match created {
                Ok(_) => tracing::info!(collection, dims, "created the Qdrant collection"),
                // Another replica created it meanwhile: checked below like any existing one.
                Err(e) if client.collection_exists(&collection).await.unwrap_or(false) => {
                    tracing::debug!(error = %e, "collection created concurrently");
                }
                Err(e) => return Err(server(e)),
            }
        }
        let info = collection_info(&client, &collection).await?;
        let params = info
            .config
            .as_ref()
            .and_then(|c| c.params.clone())
            .ok_or_else(|| bad(format!("collection {collection} reports no parameters")))?;
        check_layout(&collection, &params, dims)?;

        let mut index = Self {
            client,
            collection,
            dims,
            keywords: Keywords::new()?,
            attribute_indexes: Mutex::new(HashMap::new()),
            read_consistency: read_consistency(&params),
        };
        for (key, is_tenant) in [(STORE_KEY, true), (PROJECT_KEY, false), (FILE_KEY, false)] {
            if !info.payload_schema.contains_key(key) {
                let params = IndexParams::KeywordIndexParams(KeywordIndexParams {
                    is_tenant: Some(is_tenant),
                    ..KeywordIndexParams::default()
                });
                index
                    .create_index(key, FieldType::Keyword, Some(params))
                    .await?;
            }
        }
        index.attribute_indexes = Mutex::new(attribute_indexes(&info.payload_schema));
        Ok(index)
    }

    /// Opens the existing collection of `model`, whatever its dimensions (there must be one
    /// only): what copying it elsewhere reads.
    pub async fn open_existing(options: &QdrantOptions, model: &str) -> Result<Self> {
        let client = connect(options).await?;
        let stem = collection_name(&options.collection_prefix, model, 0);
        let stem = stem.strip_suffix('0').unwrap_or(&stem);
        let mut found: Vec<usize> = client
            .list_collections()
            .await
            .map_err(server)?
            .collections
            .into_iter()
            .filter_map(|c| c.name.strip_prefix(stem)?.parse().ok())
            .collect();
        match found.as_slice() {
            [_] => Self::open(options, model, found.remove(0)).await,
            [] => Err(bad(format!(
                "the server at {} has no collection {stem}<dimensions>",
                options.url
            ))),
            many => Err(bad(format!(
                "the server at {} has collections {stem}<dimensions> for {many:?} dimensions",
                options.url
            ))),
        }
    }

    /// The dense vectors' dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The collection this index reads and writes.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Deletes the collection and every point in it (tests clean up with it).
    pub async fn drop_collection(self) -> Result<()> {
        self.client
            .delete_collection(&self.collection)
            .await
            .map_err(server)?;
        Ok(())
    }

    async fn create_index(
        &self,
        field: &str,
        kind: FieldType,
        params: Option<IndexParams>,
    ) -> Result<()> {
        self.client
            .create_field_index(CreateFieldIndexCollection {
                collection_name: self.collection.clone(),
                wait: wait(),
                field_name: field.to_owned(),
                field_type: Some(kind.into()),
                field_index_params: params.map(|p| PayloadIndexParams {
                    index_params: Some(p),
                }),
                ordering: ordering(),
                timeout: None,
            })
            .await
            .map_err(server)?;
        Ok(())
    }

    /// Gives every attribute key of `attributes` a payload index of its value's kind, once:
    /// filters are on users' own keys, and with an index the server knows how selective a
    /// filter is and checks it without reading each candidate's payload.
    async fn index_attributes(&self, attributes: &[Attributes]) -> Result<()> {
        let new = |known: &HashMap<String, FieldType>| -> Vec<(String, FieldType)> {
            let mut new: Vec<(String, FieldType)> = Vec::new();
            for (key, value) in attributes.iter().flatten() {
                if !known.contains_key(key) && !new.iter().any(|(k, _)| k == key) {
                    new.push((key.clone(), index_kind(value)));
                }
            }
            let room = MAX_ATTRIBUTE_INDEXES.saturating_sub(known.len());
            new.truncate(room);
            new
        };
        let lock = || {
            self.attribute_indexes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if new(&lock()).is_empty() {
            return Ok(());
        }
        // Another replica may have indexed some: creating one again with another kind would
        // replace its index.
        let info = collection_info(&self.client, &self.collection).await?;
        let on_server = attribute_indexes(&info.payload_schema);
        lock().extend(on_server.clone());
        for (key, kind) in new(&on_server) {
            self.create_index(&attribute_path(&key)?, kind, None)
                .await?;
            lock().insert(key, kind);
        }
        Ok(())
    }

    /// Inserts or overwrites points, giving their attribute keys payload indexes first.
    async fn write_points(&self, points: Vec<StoredPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let attributes = payload::distinct_attributes(&points);
        let points = points
            .into_iter()
            .map(|p| {
                payload::check_dims(&p.vector, self.dims)?;
                Ok(point_struct(p.id, p.vector, p.keywords, p.payload))
            })
            .collect::<Result<Vec<_>>>()?;
        self.index_attributes(&attributes).await?;
        self.client
            .upsert_points(UpsertPoints {
                collection_name: self.collection.clone(),
                wait: wait(),
                points,
                ordering: ordering(),
                ..UpsertPoints::default()
            })
            .await
            .map_err(server)?;
        Ok(())
    }

    async fn delete(&self, filter: Option<qdrant::Filter>) -> Result<()> {
        let Some(filter) = filter else {
            return Ok(());
        };
        self.client
            .delete_points(DeletePoints {
                collection_name: self.collection.clone(),
                wait: wait(),
                points: Some(filter.into()),
                ordering: ordering(),
                ..DeletePoints::default()
            })
            .await
            .map_err(server)?;
        Ok(())
    }

    /// Sets top-level payload keys on the points `filter` selects.
    async fn set_payload(&self, filter: qdrant::Filter, payload: Map<String, Value>) -> Result<()> {
        self.client
            .set_payload(SetPayloadPoints {
                collection_name: self.collection.clone(),
                wait: wait(),
                payload: Payload::from(payload).into(),
                points_selector: Some(filter.into()),
                ordering: ordering(),
                ..SetPayloadPoints::default()
            })
            .await
            .map_err(server)?;
        Ok(())
    }

    async fn count_where(&self, filter: Option<qdrant::Filter>) -> Result<u64> {
        let response = self
            .client
            .count(CountPoints {
                collection_name: self.collection.clone(),
                filter,
                exact: Some(true),
                read_consistency: self.read_consistency,
                ..CountPoints::default()
            })
            .await
            .map_err(server)?;
        Ok(response.result.map_or(0, |r| r.count))
    }

    /// Sets the given vectors of existing points (their other vectors and payload kept) and
    /// returns how many it set. `update_vectors` never creates a point; a batch naming one
    /// that is gone fails (having set the others), so it is sent again without those.
    pub(crate) async fn update_existing(&self, mut points: Vec<PointVectors>) -> Result<u64> {
        for _ in 0..3 {
            if points.is_empty() {
                return Ok(0);
            }
            let sent = self
                .client
                .update_vectors(UpdatePointVectors {
                    collection_name: self.collection.clone(),
                    wait: wait(),
                    points: points.clone(),
                    ordering: ordering(),
                    ..UpdatePointVectors::default()
                })
                .await;
            let first = match sent {
                Ok(_) => return Ok(points.len() as u64),
                Err(e) if is_not_found(&e) => e,
                Err(e) => return Err(server(e)),
            };
            let ids: Vec<PointId> = points.iter().filter_map(|p| p.id.clone()).collect();
            let live: HashSet<Uuid> = self
                .client
                .get_points(GetPoints {
                    collection_name: self.collection.clone(),
                    ids,
                    with_payload: Some(false.into()),
                    with_vectors: Some(false.into()),
                    read_consistency: self.read_consistency,
                    ..GetPoints::default()
                })
                .await
                .map_err(server)?
                .result
                .into_iter()
                .filter_map(|r| uuid_of(r.id).ok())
                .collect();
            if live.len() == points.len() {
                return Err(server(first));
            }
            points.retain(|p| uuid_of(p.id.clone()).is_ok_and(|id| live.contains(&id)));
        }
        Err(Error::Unavailable(anyhow!(
            "vector index: Qdrant: points kept disappearing while their vectors were set"
        )))
    }
}

/// Connects and checks the server answers, and with a version the client speaks.
async fn connect(options: &QdrantOptions) -> Result<Qdrant> {
    let mut config = Qdrant::from_url(&options.url)
        .timeout(options.timeout)
        .connect_timeout(Duration::from_secs(10))
        // Its own check prints to stdout; the version is checked below.
        .skip_compatibility_check();
    if let Some(key) = &options.api_key {
        config = config.api_key(key.clone());
    }
    let client = config
        .build()
        .map_err(|e| bad(format!("{}: {e}", options.url)))?;
    let health = client.health_check().await.map_err(|e| {
        Error::Unavailable(anyhow!(
            "vector index: cannot reach the Qdrant server at {}: {e}",
            options.url
        ))
    })?;
    let version: Vec<u64> = health
        .version
        .split('.')
        .map_while(|p| p.parse().ok())
        .collect();
    match version.as_slice() {
        [major, minor, ..] if (*major, *minor) >= CLIENT_MINOR => {}
        _ => tracing::warn!(
            server = health.version,
            client = format!("{}.{}", CLIENT_MINOR.0, CLIENT_MINOR.1),
            "the Qdrant server is older than the client ragstore was built with"
        ),
    }
    Ok(client)
}

async fn collection_info(client: &Qdrant, collection: &str) -> Result<qdrant::CollectionInfo> {
    client
        .collection_info(collection)
        .await
        .map_err(server)?
        .result
        .ok_or_else(|| bad(format!("collection {collection}: no info")))
}

/// A new collection: the dense vector, the keyword vector, the cluster settings.
fn new_collection(name: &str, dims: usize, options: &QdrantOptions) -> CreateCollection {
    CreateCollection {
        collection_name: name.to_owned(),
        vectors_config: Some(VectorsConfig {
            config: Some(vectors_config::Config::Params(VectorParams {
                size: dims as u64,
                distance: Distance::Cosine.into(),
                ..VectorParams::default()
            })),
        }),
        sparse_vectors_config: Some(SparseVectorConfig {
            map: HashMap::from([(
                SPARSE_VECTOR.to_owned(),
                SparseVectorParams {
                    index: None,
                    modifier: Some(Modifier::Idf.into()),
                },
            )]),
        }),
        shard_number: options.shard_number,
        replication_factor: options.replication_factor,
        write_consistency_factor: options.write_consistency_factor,
        optimizers_config: options
            .indexing_threshold_kb
            .map(|kb| OptimizersConfigDiff {
                indexing_threshold: Some(kb),
                ..OptimizersConfigDiff::default()
            }),
        hnsw_config: options.full_scan_threshold_kb.map(|kb| HnswConfigDiff {
            full_scan_threshold: Some(kb),
            ..HnswConfigDiff::default()
        }),
        ..CreateCollection::default()
    }
}

/// Refuses a collection whose vectors are not the ones this index writes: writing into it
/// would fail point by point, or worse, mix vector spaces.
fn check_layout(collection: &str, params: &qdrant::CollectionParams, dims: usize) -> Result<()> {
    let refuse = |found: String| {
        Err(Error::Internal(anyhow!(
            "Qdrant collection {collection} exists with {found}, but ragstore needs an unnamed \
             dense vector of {dims} dimensions (cosine) and a sparse vector '{SPARSE_VECTOR}' \
             with the IDF modifier; delete the collection or choose another \
             --qdrant-collection-prefix"
        )))
    };
    match params
        .vectors_config
        .as_ref()
        .and_then(|c| c.config.as_ref())
    {
        Some(vectors_config::Config::Params(p)) => {
            if p.size != dims as u64 || p.distance != i32::from(Distance::Cosine) {
                let distance = Distance::try_from(p.distance)
                    .map_or_else(|_| p.distance.to_string(), |d| d.as_str_name().to_owned());
                return refuse(format!(
                    "a dense vector of {} dimensions ({distance})",
                    p.size
                ));
            }
        }
        Some(vectors_config::Config::ParamsMap(m)) => {
            let names: Vec<&String> = m.map.keys().collect();
            return refuse(format!("named dense vectors {names:?}"));
        }
        None => return refuse("no dense vector".into()),
    }
    let modifier = params
        .sparse_vectors_config
        .as_ref()
        .and_then(|c| c.map.get(SPARSE_VECTOR))
        .map(|s| s.modifier);
    match modifier {
        Some(Some(m)) if m == i32::from(Modifier::Idf) => Ok(()),
        Some(_) => refuse(format!(
            "a sparse vector '{SPARSE_VECTOR}' without the IDF modifier"
        )),
        None => refuse(format!("no sparse vector '{SPARSE_VECTOR}'")),
    }
}

/// Reads ask enough replicas that at least one of them took every acknowledged write.
fn read_consistency(params: &qdrant::CollectionParams) -> Option<ReadConsistency> {
    let replicas = u64::from(params.replication_factor.unwrap_or(1));
    let writes = u64::from(params.write_consistency_factor.unwrap_or(1));
    (replicas > 1).then(|| ReadConsistency {
        value: Some(read_consistency::Value::Factor(
            (replicas + 1).saturating_sub(writes).max(1),
        )),
    })
}

/// The attribute keys a collection's payload schema indexes, with their kinds.
fn attribute_indexes(
    schema: &HashMap<String, qdrant::PayloadSchemaInfo>,
) -> HashMap<String, FieldType> {
    schema
        .iter()
        .filter_map(|(path, info)| {
            let kind = qdrant::PayloadSchemaType::try_from(info.data_type).ok()?;
            let kind = match kind {
                qdrant::PayloadSchemaType::Keyword => FieldType::Keyword,
                qdrant::PayloadSchemaType::Float => FieldType::Float,
                qdrant::PayloadSchemaType::Bool => FieldType::Bool,
                qdrant::PayloadSchemaType::Integer => FieldType::Integer,
                _ => FieldType::Text,
            };
            Some((attribute_of_path(path)?, kind))
        })
        .collect()
}

/// A point the server read back, as any index stores it.
fn to_stored_point(r: qdrant::RetrievedPoint) -> Result<StoredPoint> {
    let id = uuid_of(r.id)?;
    let (mut vector, mut keywords) = (None, None);
    let named = match r.vectors.and_then(|v| v.vectors_options) {
        Some(vectors_output::VectorsOptions::Vector(v)) => HashMap::from([(String::new(), v)]),
        Some(vectors_output::VectorsOptions::Vectors(named)) => named.vectors,
        None => HashMap::new(),
    };
    for (name, v) in named {
        match (name.as_str(), v.into_vector()) {
            ("", vector_output::Vector::Dense(d)) => vector = Some(d.data),
            (SPARSE_VECTOR, vector_output::Vector::Sparse(s)) => {
                keywords = Some(Sparse {
                    indices: s.indices,
                    values: s.values,
                });
            }
            (name, _) => return Err(bad(format!("point {id}: unexpected vector {name:?}"))),
        }
    }
    Ok(StoredPoint {
        id,
        vector: vector.ok_or_else(|| bad(format!("point {id}: no dense vector")))?,
        keywords,
        payload: json(r.payload),
    })
}

fn point_struct(
    id: Uuid,
    vector: Vec<f32>,
    keywords: Option<Sparse>,
    payload: Map<String, Value>,
) -> PointStruct {
    PointStruct {
        id: Some(id.into()),
        payload: Payload::from(payload).into(),
        vectors: Some(vectors(vector, keywords)),
    }
}

#[async_trait]
impl VectorIndex for QdrantIndex {
    #[tracing::instrument(name = "index.upsert", skip_all, fields(points = points.len()))]
    async fn upsert(&self, points: Vec<Point>) -> Result<()> {
        let points = points
            .into_iter()
            .map(|p| payload::stored(p, &self.keywords))
            .collect::<Result<Vec<_>>>()?;
        self.write_points(points).await
    }

    #[tracing::instrument(name = "index.search", skip_all, fields(store = %q.store, limit = q.limit))]
    async fn search(&self, q: &SearchQuery) -> Result<Vec<Hit>> {
        let (query, using) = match &q.leg {
            Leg::Dense(v) => {
                payload::check_dims(v, self.dims)?;
                (Query::new_nearest(VectorInput::new_dense(v.clone())), None)
            }
            Leg::Keyword(text) => {
                let s = self.keywords.query(text);
                if s.is_empty() {
                    return Ok(Vec::new());
                }
                let input = VectorInput::new_sparse(s.indices, s.values);
                (Query::new_nearest(input), Some(SPARSE_VECTOR.to_owned()))
            }
        };
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        // As in the embedded index: a filtered dense search also explores neighbours'
        // neighbours (ACORN), with a beam that keeps it fast.
        let dense = matches!(q.leg, Leg::Dense(_));
        let params = q.filter.as_ref().filter(|_| dense).map(|_| SearchParams {
            acorn: Some(AcornSearchParams {
                enable: Some(true),
                max_selectivity: Some(1.0),
            }),
            hnsw_ef: Some((2 * q.limit as u64).max(32)),
            ..SearchParams::default()
        });
        let response = self
            .client
            .query(QueryPoints {
                collection_name: self.collection.clone(),
                query: Some(query),
                using,
                filter: Some(filter::search::<ServerConditions>(q)?),
                params,
                score_threshold: q.score_threshold,
                limit: Some(q.limit as u64),
                with_payload: Some(true.into()),
                with_vectors: Some(false.into()),
                read_consistency: self.read_consistency,
                ..QueryPoints::default()
            })
            .await
            .map_err(server)?;
        response
            .result
            .into_iter()
            .map(|p| payload::hit(uuid_of(p.id)?, p.score, json(p.payload)))
            .collect()
    }

    #[tracing::instrument(name = "index.index_keywords", skip_all, fields(store = %store))]
    async fn index_keywords(
        &self,
        store: &VectorStoreId,
        from: Option<Uuid>,
        limit: usize,
    ) -> Result<KeywordRound> {
        let page = self
            .client
            .scroll(ScrollPoints {
                collection_name: self.collection.clone(),
                filter: Some(filter::without_keywords::<ServerConditions>(store)?),
                offset: from.map(PointId::from),
                limit: Some(u32::try_from(limit.max(1)).unwrap_or(u32::MAX)),
                with_payload: Some(WithPayloadSelector {
                    selector_options: Some(with_payload_selector::SelectorOptions::Include(
                        PayloadIncludeSelector {
                            fields: vec![TEXT_KEY.to_owned()],
                        },
                    )),
                }),
                with_vectors: Some(false.into()),
                read_consistency: self.read_consistency,
                ..ScrollPoints::default()
            })
            .await
            .map_err(server)?;
        let points = page
            .result
            .into_iter()
            .map(|r| {
                let text = json(r.payload)
                    .remove(TEXT_KEY)
                    .and_then(|t| t.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let named = HashMap::from([(
                    SPARSE_VECTOR.to_owned(),
                    sparse(self.keywords.document(&text)),
                )]);
                PointVectors {
                    id: r.id,
                    vectors: Some(NamedVectors { vectors: named }.into()),
                }
            })
            .collect();
        let indexed = self.update_existing(points).await?;
        let next = match page.next_page_offset {
            Some(id) => Some(uuid_of(Some(id))?),
            None => None,
        };
        Ok(KeywordRound { indexed, next })
    }

    async fn missing_keywords(&self, store: &VectorStoreId) -> Result<u64> {
        self.count_where(Some(filter::without_keywords::<ServerConditions>(store)?))
            .await
    }

    #[tracing::instrument(name = "index.delete_file", skip_all, fields(file = %file))]
    async fn delete_file(&self, store: Option<&VectorStoreId>, file: &FileId) -> Result<()> {
        self.delete(filter::scope::<ServerConditions>(store, Some(file))?)
            .await
    }

    #[tracing::instrument(name = "index.delete_store", skip_all, fields(store = %store))]
    async fn delete_store(&self, store: &VectorStoreId) -> Result<()> {
        self.delete(filter::scope::<ServerConditions>(Some(store), None)?)
            .await
    }

    #[tracing::instrument(name = "index.set_attributes", skip_all, fields(store = %store, file = %file))]
    async fn set_attributes(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        attributes: &Attributes,
    ) -> Result<()> {
        let Some(filter) = filter::scope::<ServerConditions>(Some(store), Some(file))? else {
            return Ok(());
        };
        self.index_attributes(std::slice::from_ref(attributes))
            .await?;
        let value = serde_json::to_value(attributes).context("attributes to JSON")?;
        // Setting a top-level key replaces its whole value, so keys absent from the new map go.
        let payload = Map::from_iter([(ATTRIBUTES_KEY.to_owned(), value)]);
        self.set_payload(filter, payload).await
    }

    async fn adopt_store(&self, store: &VectorStoreId, project: &ProjectId) -> Result<u64> {
        let filter = filter::unadopted::<ServerConditions>(store, project)?;
        let n = self.count_where(Some(filter.clone())).await?;
        if n > 0 {
            let value = Value::String(project.as_str().into());
            self.set_payload(filter, Map::from_iter([(PROJECT_KEY.to_owned(), value)]))
                .await?;
        }
        Ok(n)
    }

    async fn count(&self, store: Option<&VectorStoreId>, file: Option<&FileId>) -> Result<u64> {
        self.count_where(filter::scope::<ServerConditions>(store, file)?)
            .await
    }

    async fn export_points(&self, from: Option<Uuid>, limit: usize) -> Result<ExportPage> {
        let page = self
            .client
            .scroll(ScrollPoints {
                collection_name: self.collection.clone(),
                offset: from.map(PointId::from),
                limit: Some(u32::try_from(limit.max(1)).unwrap_or(u32::MAX)),
                with_payload: Some(true.into()),
                with_vectors: Some(true.into()),
                read_consistency: self.read_consistency,
                ..ScrollPoints::default()
            })
            .await
            .map_err(server)?;
        Ok(ExportPage {
            points: page
                .result
                .into_iter()
                .map(to_stored_point)
                .collect::<Result<_>>()?,
            next: match page.next_page_offset {
                Some(id) => Some(uuid_of(Some(id))?),
                None => None,
            },
        })
    }

    #[tracing::instrument(name = "index.import", skip_all, fields(points = points.len()))]
    async fn import_points(&self, points: Vec<StoredPoint>) -> Result<()> {
        self.write_points(points).await
    }

    /// The server optimises on its own; this waits (up to an hour: merging and re-indexing
    /// 200 000 points takes the server tens of minutes on two cores) until it has nothing
    /// left to do, starting optimisations it holds back (a grey collection, after a restart).
    #[tracing::instrument(name = "index.maintain", skip_all)]
    async fn maintain(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let info = collection_info(&self.client, &self.collection).await?;
            match CollectionStatus::try_from(info.status) {
                Ok(CollectionStatus::Green) => return Ok(()),
                Ok(CollectionStatus::Red) => {
                    return Err(Error::Unavailable(anyhow!(
                        "vector index: Qdrant collection {} is red (an optimisation failed): {:?}",
                        self.collection,
                        info.optimizer_status.map(|s| s.error)
                    )))
                }
                Ok(CollectionStatus::Grey) => {
                    self.client
                        .update_collection(UpdateCollection {
                            collection_name: self.collection.clone(),
                            optimizers_config: Some(OptimizersConfigDiff::default()),
                            ..UpdateCollection::default()
                        })
                        .await
                        .map_err(server)?;
                }
                _ => {}
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    collection = self.collection,
                    "Qdrant still optimising after an hour"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::index::point_id;
    use serde_json::json;

    /// The test server (`RAGSTORE_TEST_QDRANT_URL`); without one the test is skipped, saying
    /// why, unless `CI` is set (then it fails). Each test gets a collection prefix of its own.
    fn server_options(test: &str) -> Option<QdrantOptions> {
        let url = match std::env::var("RAGSTORE_TEST_QDRANT_URL") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => panic!(
                "{test}: CI is set but RAGSTORE_TEST_QDRANT_URL is not: the Qdrant-server \
                 tests must run in CI (scripts/qdrant-test-server.sh starts a server)"
            ),
            _ => {
                eprintln!(
                    "SKIPPED {test}: RAGSTORE_TEST_QDRANT_URL is not set, so this test of the \
                     Qdrant-server backend did not run (scripts/qdrant-test-server.sh starts one)"
                );
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Some(QdrantOptions {
            collection_prefix: format!("u{}_{nanos}_{test}", std::process::id()),
            ..QdrantOptions::new(url)
        })
    }

    const DIMS: usize = 4;

    fn point(store: &str, file: &str, chunk: u32, text: &str, attributes: Value) -> Point {
        let (store, file) = (
            VectorStoreId::parse(store).unwrap(),
            FileId::parse(file).unwrap(),
        );
        Point {
            id: point_id(&file, &store, chunk),
            vector: vec![1.0, chunk as f32, 0.5, 0.0],
            vector_store_id: store,
            project_id: ProjectId::default_project(),
            file_id: file,
            chunk_index: chunk,
            text: text.into(),
            attributes: serde_json::from_value(attributes).unwrap(),
            extra: Map::new(),
        }
    }

    #[tokio::test]
    async fn open_lays_out_the_collection_and_its_indexes_and_refuses_another_layout() {
        let Some(options) = server_options("layout") else {
            return;
        };
        let idx = QdrantIndex::open(&options, "m", DIMS).await.unwrap();
        assert_eq!(
            idx.collection(),
            format!("{}_m_4", options.collection_prefix)
        );
        idx.upsert(vec![point(
            "vs_a",
            "file-f",
            0,
            "some text",
            json!({"lang": "en", "year": 2020, "draft": false}),
        )])
        .await
        .unwrap();
        let info = collection_info(&idx.client, idx.collection())
            .await
            .unwrap();
        let kind = |path: &str| {
            let found = info.payload_schema.get(path);
            found.map(|i| qdrant::PayloadSchemaType::try_from(i.data_type).unwrap())
        };
        for key in [STORE_KEY, PROJECT_KEY, FILE_KEY] {
            assert_eq!(kind(key), Some(qdrant::PayloadSchemaType::Keyword), "{key}");
        }
        let tenant = info.payload_schema[STORE_KEY].params.clone().unwrap();
        assert!(matches!(
            tenant.index_params,
            Some(IndexParams::KeywordIndexParams(KeywordIndexParams {
                is_tenant: Some(true),
                ..
            }))
        ));
        let attributes = attribute_indexes(&info.payload_schema);
        assert_eq!(attributes.get("lang"), Some(&FieldType::Keyword));
        assert_eq!(attributes.get("year"), Some(&FieldType::Float));
        assert_eq!(attributes.get("draft"), Some(&FieldType::Bool));
        // Reopened, it knows its indexes from the server.
        let again = QdrantIndex::open(&options, "m", DIMS).await.unwrap();
        assert_eq!(*again.attribute_indexes.lock().unwrap(), attributes);

        // A collection of that name laid out otherwise is refused, not written to.
        let other = collection_name(&options.collection_prefix, "other", DIMS);
        idx.client
            .create_collection(new_collection(&other, DIMS + 1, &options))
            .await
            .unwrap();
        let err = QdrantIndex::open(&options, "other", DIMS)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("exists with a dense vector of 5"),
            "{err}"
        );
        let mut no_idf = new_collection(&other, DIMS, &options);
        no_idf.sparse_vectors_config = None;
        idx.client.delete_collection(&other).await.unwrap();
        idx.client.create_collection(no_idf).await.unwrap();
        let err = QdrantIndex::open(&options, "other", DIMS)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no sparse vector 'bm25'"), "{err}");
        idx.client.delete_collection(&other).await.unwrap();
        again.drop_collection().await.unwrap();
    }

    #[tokio::test]
    async fn updating_vectors_skips_a_point_deleted_meanwhile() {
        let Some(options) = server_options("update") else {
            return;
        };
        let idx = QdrantIndex::open(&options, "m", DIMS).await.unwrap();
        let kept = point("vs_a", "file-f", 0, "kept", json!({}));
        let gone = point("vs_a", "file-g", 1, "gone", json!({}));
        let (kept_id, gone_id) = (kept.id, gone.id);
        idx.upsert(vec![gone, kept]).await.unwrap();
        idx.delete_file(None, &FileId::parse("file-g").unwrap())
            .await
            .unwrap();
        let vectors = |id: Uuid| PointVectors {
            id: Some(id.into()),
            vectors: Some(
                NamedVectors {
                    vectors: HashMap::from([(
                        SPARSE_VECTOR.to_owned(),
                        sparse(Sparse {
                            indices: vec![7],
                            values: vec![1.0],
                        }),
                    )]),
                }
                .into(),
            ),
        };
        // The deleted point first and last: either way the live one is set, the other not
        // brought back.
        for order in [[gone_id, kept_id], [kept_id, gone_id]] {
            let n = idx
                .update_existing(order.iter().map(|id| vectors(*id)).collect())
                .await
                .unwrap();
            assert_eq!(n, 1);
            assert_eq!(idx.count(None, None).await.unwrap(), 1);
        }
        let page = idx.export_points(None, 10).await.unwrap();
        assert_eq!(page.points.len(), 1);
        assert_eq!(page.points[0].id, kept_id);
        assert_eq!(page.points[0].keywords.as_ref().unwrap().indices, vec![7]);
        // A batch of only deleted points sets nothing and is no error.
        assert_eq!(
            idx.update_existing(vec![vectors(gone_id)]).await.unwrap(),
            0
        );
        assert_eq!(idx.count(None, None).await.unwrap(), 1);
        idx.drop_collection().await.unwrap();
    }

    #[tokio::test]
    async fn maintain_returns_once_the_server_built_its_graphs() {
        let Some(options) = server_options("maintain") else {
            return;
        };
        let options = QdrantOptions {
            indexing_threshold_kb: Some(1),
            ..options
        };
        let idx = QdrantIndex::open(&options, "m", DIMS).await.unwrap();
        let points: Vec<Point> = (0..2_000)
            .map(|i| point("vs_a", "file-f", i, "text", json!({})))
            .collect();
        for batch in points.chunks(500) {
            idx.upsert(batch.to_vec()).await.unwrap();
        }
        idx.maintain().await.unwrap();
        let info = collection_info(&idx.client, idx.collection())
            .await
            .unwrap();
        assert_eq!(
            CollectionStatus::try_from(info.status),
            Ok(CollectionStatus::Green)
        );
        // Dense vectors in graphs (keyword vectors are counted as indexed always).
        assert!(
            info.indexed_vectors_count.unwrap_or(0) > info.points_count.unwrap_or(0),
            "{:?} indexed of {:?} points",
            info.indexed_vectors_count,
            info.points_count
        );
        idx.drop_collection().await.unwrap();
    }

    #[test]
    fn collection_names_are_safe_and_distinct_per_model_and_size() {
        assert_eq!(
            collection_name("ragstore", "all-MiniLM-L6-v2", 384),
            "ragstore_all-minilm-l6-v2_384"
        );
        assert_eq!(
            collection_name("ragstore", "org/model:v1.5", 768),
            "ragstore_org_model_v1_5_768"
        );
        assert_ne!(
            collection_name("ragstore", "m", 384),
            collection_name("ragstore", "m", 768)
        );
    }

    #[test]
    fn reads_overlap_acknowledged_writes() {
        let params = |rf, wcf| qdrant::CollectionParams {
            replication_factor: Some(rf),
            write_consistency_factor: Some(wcf),
            ..qdrant::CollectionParams::default()
        };
        let factor = |p| match read_consistency(&p).and_then(|r| r.value) {
            Some(read_consistency::Value::Factor(n)) => n,
            other => panic!("{other:?}"),
        };
        assert!(read_consistency(&params(1, 1)).is_none());
        assert_eq!(factor(params(3, 1)), 3);
        assert_eq!(factor(params(3, 2)), 2);
        assert_eq!(factor(params(3, 3)), 1);
    }

    #[test]
    fn attribute_index_paths_name_their_key() {
        assert_eq!(
            attribute_of_path("attributes.\"a.b c\""),
            Some("a.b c".into())
        );
        assert_eq!(attribute_of_path("attributes.lang"), Some("lang".into()));
        assert_eq!(attribute_of_path("file_id"), None);
    }
}
