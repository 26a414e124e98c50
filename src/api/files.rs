//! `/files`: upload (multipart), list, retrieve, content, delete.

use axum::body::Body;
use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, FromRequest, OriginalUri, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use serde::Deserialize;

use super::error::{multipart_error, path_id, ApiMultipart, ApiQuery, ApiResult};
use super::{body_limit, sessions, BodyLimits, DeletedResponse, ListResponse, Project};
use crate::domain::{page, Error, FileExpiry, FileId, FileRecord, Order, Purpose, Resource};
use crate::service::files::{ListFiles, NewFile, LIST_DEFAULT_LIMIT};
use crate::service::{FileService, Services, UploadService};
use crate::storage::{StagedFile, Staging};

pub fn router(limits: BodyLimits) -> Router<Services> {
    Router::new()
        .route(
            "/files",
            post(create_or_open)
                .layer(DefaultBodyLimit::max(body_limit(limits.file)))
                .get(list),
        )
        // `{id}` is a file id (`file-…`), a session (`session:…`) or a bucket name.
        .route(
            "/files/{id}",
            get(retrieve_any).delete(delete).post(post_to),
        )
        .route("/files/{id}/{*rest}", get(get_nested).delete(delete_nested))
        .route("/buckets", get(sessions::list_buckets))
}

/// `POST /files`: a multipart upload (OpenAI), or with a JSON body an upload session.
async fn create_or_open(
    State(files): State<FileService>,
    State(uploads): State<UploadService>,
    Project(project): Project,
    headers: HeaderMap,
    uri: OriginalUri,
    req: Request,
) -> ApiResult<Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        let base = sessions::Base::of(&headers, &uri);
        return Ok(sessions::open(uploads, &project, base, req)
            .await?
            .into_response());
    }
    let form = ApiMultipart::from_request(req, &()).await?;
    Ok(create(State(files), Project(project), form)
        .await?
        .into_response())
}

/// `GET /files/{id}`: a file, a session's offset, or a bucket's files.
async fn retrieve_any(
    State(files): State<FileService>,
    State(uploads): State<UploadService>,
    Project(project): Project,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    let base = sessions::Base::of(&headers, &uri);
    if let Some(session) = sessions::session_id(&id) {
        return Ok(sessions::info(&uploads, &project, base, session?)
            .await?
            .into_response());
    }
    if id.starts_with("file-") {
        return Ok(retrieve(State(files), Project(project), Path(id))
            .await?
            .into_response());
    }
    Ok(sessions::list_bucket(&uploads, &project, base, &id)
        .await?
        .into_response())
}

/// `POST /files/session:{id}` appends to a session; files take no `POST`.
async fn post_to(
    State(uploads): State<UploadService>,
    Project(project): Project,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: OriginalUri,
    body: Body,
) -> ApiResult<Response> {
    let Some(session) = sessions::session_id(&id) else {
        return Ok(super::method_not_allowed_for(
            &axum::http::Method::POST,
            uri.0.path(),
        ));
    };
    let base = sessions::Base::of(&headers, &uri);
    Ok(
        sessions::append(&uploads, &project, base, session?, &headers, body)
            .await?
            .into_response(),
    )
}

/// `GET /files/{file_id}/content`, or `GET /files/{bucket}/{key}`.
async fn get_nested(
    State(files): State<FileService>,
    State(uploads): State<UploadService>,
    Project(project): Project,
    Path((id, rest)): Path<(String, String)>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    if id.starts_with("file-") {
        if rest == "content" {
            return content(State(files), Project(project), Path(id), headers).await;
        }
        return Ok(super::invalid_url(&axum::http::Method::GET, uri.0.path()));
    }
    let base = sessions::Base::of(&headers, &uri);
    let (object, file) = uploads.bucket_object(&project, &id, &rest).await?;
    Ok(Json(sessions::file_response(&base, &object, &file)).into_response())
}

/// `DELETE /files/{bucket}/{key}`: the file, from every store too.
async fn delete_nested(
    State(uploads): State<UploadService>,
    Project(project): Project,
    Path((id, rest)): Path<(String, String)>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> ApiResult<Response> {
    if id.starts_with("file-") {
        return Ok(super::method_not_allowed_for(
            &axum::http::Method::DELETE,
            uri.0.path(),
        ));
    }
    let base = sessions::Base::of(&headers, &uri);
    let (object, file) = uploads.delete_object(&project, &id, &rest).await?;
    Ok(Json(sessions::file_response(&base, &object, &file)).into_response())
}

/// OpenAI's `OpenAIFile`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OpenAIFile)]
pub struct FileObject {
    pub id: String,
    pub object: &'static str,
    pub bytes: i64,
    pub created_at: i64,
    pub filename: String,
    pub purpose: &'static str,
    pub status: &'static str,
    pub expires_at: Option<i64>,
    pub status_details: Option<String>,
}

impl From<&FileRecord> for FileObject {
    fn from(f: &FileRecord) -> Self {
        Self {
            id: f.id.to_string(),
            object: "file",
            bytes: f.bytes,
            created_at: f.created_at,
            filename: f.filename.clone(),
            purpose: f.purpose.as_str(),
            status: f.status.as_str(),
            expires_at: f.expires_at,
            status_details: f.status_details.clone(),
        }
    }
}

/// Longest text form field we accept (purpose, expires_after[...]).
const MAX_TEXT_FIELD: usize = 4096;

pub(crate) async fn read_text_field(
    mut field: Field<'_>,
    param: &'static str,
) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(Error::invalid(
                format!("The form field '{param}' is longer than {MAX_TEXT_FIELD} bytes."),
                param,
            )
            .into());
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| {
        Error::invalid(
            format!("The form field '{param}' is not valid UTF-8."),
            param,
        )
        .into()
    })
}

/// Streams a form field into a staged file, refusing it once it passes `max` bytes.
pub(crate) async fn stage_field(
    staging: &Staging,
    mut field: Field<'_>,
    max: u64,
    param: &'static str,
) -> ApiResult<StagedFile> {
    let mut writer = staging.writer(false);
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if writer.len() + chunk.len() as u64 > max {
            return Err(Error::too_large(
                format!("The '{param}' is larger than the {max} bytes allowed."),
                param,
            )
            .into());
        }
        writer.write(chunk).await?;
    }
    Ok(writer.finish().await?)
}

async fn create(
    State(files): State<FileService>,
    Project(project): Project,
    ApiMultipart(mut form): ApiMultipart,
) -> ApiResult<Json<FileObject>> {
    let mut purpose: Option<Purpose> = None;
    let mut anchor: Option<String> = None;
    let mut seconds: Option<String> = None;
    let mut file: Option<(String, StagedFile)> = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") => {
                if file.is_some() {
                    return Err(Error::invalid(
                        "Only one 'file' may be uploaded per request.",
                        "file",
                    )
                    .into());
                }
                let filename = field.file_name().map(unquote).ok_or_else(|| {
                    Error::invalid(
                        "The 'file' field must be a file upload with a filename.",
                        "file",
                    )
                })?;
                // A bad name is refused before any of the body is read.
                crate::service::files::check_filename(&filename, "file")?;
                // A purpose sent before the file already tells us its limit.
                let max = purpose.map_or(files.limits().max_file_bytes, |p| {
                    files.limits().max_bytes(p, false)
                });
                let staged = stage_field(files.staging(), field, max, "file").await?;
                file = Some((filename, staged));
            }
            Some("purpose") => {
                let text = read_text_field(field, "purpose").await?;
                purpose = Some(Purpose::from_request(text.trim(), "purpose")?);
            }
            Some("expires_after[anchor]") => {
                anchor = Some(read_text_field(field, "expires_after[anchor]").await?);
            }
            Some("expires_after[seconds]") => {
                seconds = Some(read_text_field(field, "expires_after[seconds]").await?);
            }
            // Unknown fields are skipped; next_field drains them.
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| Error::missing("purpose"))?;
    let expiry = FileExpiry::from_parts(anchor.as_deref(), seconds.as_deref())?;
    let (filename, staged) = file.ok_or_else(|| Error::missing("file"))?;
    let record = files
        .create(
            &project,
            NewFile {
                filename,
                purpose,
                expiry,
                staged,
            },
        )
        .await?;
    Ok(Json(FileObject::from(&record)))
}

/// `GET /files` query, as sent.
#[derive(Debug, Deserialize)]
struct ListFilesQuery {
    purpose: Option<String>,
    limit: Option<String>,
    order: Option<String>,
    after: Option<String>,
}

async fn list(
    State(files): State<FileService>,
    Project(project): Project,
    ApiQuery(q): ApiQuery<ListFilesQuery>,
) -> ApiResult<Json<ListResponse<FileObject>>> {
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => Some(FileId::parse(a).ok_or_else(|| {
            Error::invalid(
                format!("Invalid value for 'after': no file with id '{a}' exists."),
                "after",
            )
        })?),
    };
    let params = ListFiles {
        limit: page::parse_limit(q.limit.as_deref(), LIST_DEFAULT_LIMIT, LIST_DEFAULT_LIMIT)?,
        order: Order::parse(q.order.as_deref())?,
        purpose: q
            .purpose
            .as_deref()
            .map(|s| Purpose::from_request(s, "purpose"))
            .transpose()?,
        after,
    };
    let page = files.list(&project, params).await?;
    let data = page.items.iter().map(FileObject::from).collect();
    Ok(Json(ListResponse::new(data, page.has_more, |f| &f.id)))
}

fn file_id(raw: &str) -> ApiResult<FileId> {
    path_id(raw, Resource::File, FileId::parse)
}

async fn retrieve(
    State(files): State<FileService>,
    Project(project): Project,
    Path(file_id_raw): Path<String>,
) -> ApiResult<Json<FileObject>> {
    let record = files.get(&project, &file_id(&file_id_raw)?).await?;
    Ok(Json(FileObject::from(&record)))
}

async fn delete(
    State(files): State<FileService>,
    Project(project): Project,
    Path(file_id_raw): Path<String>,
) -> ApiResult<Json<DeletedResponse>> {
    let id = files.delete(&project, &file_id(&file_id_raw)?).await?;
    Ok(Json(DeletedResponse::new(id, "file")))
}

/// The file's bytes; a `Range: bytes=…` header asks for part of them (one range: a resumed or
/// split download), answered `206` with `Content-Range`, or `416` if the file has none of them.
async fn content(
    State(files): State<FileService>,
    Project(project): Project,
    Path(file_id_raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = file_id(&file_id_raw)?;
    let file = files.get(&project, &id).await?;
    let size = u64::try_from(file.bytes).unwrap_or(0);
    let common = |len: u64| {
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
            (
                header::CONTENT_DISPOSITION,
                content_disposition(&file.filename),
            ),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        ]
    };
    let asked = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| byte_range(v, size));
    match asked {
        None => {
            let blob = files.bytes(&file, None).await?;
            Ok((common(blob.len), Body::from_stream(blob.stream)).into_response())
        }
        Some(Some(range)) => {
            let blob = files.bytes(&file, Some(range.clone())).await?;
            let content_range = format!("bytes {}-{}/{size}", range.start, range.end - 1);
            let mut response = (
                axum::http::StatusCode::PARTIAL_CONTENT,
                common(blob.len),
                Body::from_stream(blob.stream),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Ok(response)
        }
        Some(None) => {
            let mut response = super::error::body(
                axum::http::StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("The range asked for is outside file {id}, which has {size} bytes."),
                "invalid_request_error",
                None,
                Some("range_not_satisfiable"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Ok(response)
        }
    }
}

/// A `Range` header's one byte range over `size` bytes (RFC 9110 §14.1.2): `None` when the
/// header is to be ignored (not `bytes=`, several ranges, malformed: the whole file is sent),
/// `Some(None)` when no byte of it is in the file, else the half-open range, cut at the end.
fn byte_range(header: &str, size: u64) -> Option<Option<std::ops::Range<u64>>> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if first.is_empty() {
        // The last `n` bytes.
        if !digits(last) {
            return None;
        }
        let n: u64 = last.parse().unwrap_or(u64::MAX);
        if n == 0 || size == 0 {
            return Some(None);
        }
        return Some(Some(size.saturating_sub(n)..size));
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return None;
    }
    let start: u64 = first.parse().ok()?;
    let end = if last.is_empty() {
        size
    } else {
        let last: u64 = last.parse().unwrap_or(u64::MAX);
        if last < start {
            return None;
        }
        last.saturating_add(1).min(size)
    };
    if start >= size {
        return Some(None);
    }
    Some(Some(start..end))
}

/// RFC 6266 `attachment` with a quoted ASCII fallback and, when the name is not plain ASCII, the
/// exact name as RFC 5987 `filename*`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

pub fn content_disposition(filename: &str) -> HeaderValue {
    let mut fallback = String::with_capacity(filename.len() + 2);
    let mut plain = true;
    for c in filename.chars() {
        match c {
            '"' | '\\' => {
                fallback.push('\\');
                fallback.push(c);
            }
            ' '..='~' => fallback.push(c),
            _ => {
                plain = false;
                fallback.push('_');
            }
        }
    }
    let mut value = format!("attachment; filename=\"{fallback}\"");
    if !plain {
        value.push_str("; filename*=UTF-8''");
        value.extend(utf8_percent_encode(filename, ATTR_CHAR));
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// A `filename="…"` value as sent: the quoted-pairs of its quoted-string undone (`\\` is one
/// backslash, `\"` a quote), which the multipart parser leaves in. Clients escape this way (httpx,
/// so the `openai` SDK; reqwest), so `C:\x.txt` arrives as `C:\\x.txt`.
fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().unwrap_or('\\')),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{byte_range, content_disposition, unquote};

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-99", 1000), Some(Some(0..100)));
        assert_eq!(byte_range("bytes=900-", 1000), Some(Some(900..1000)));
        assert_eq!(byte_range("bytes=900-5000", 1000), Some(Some(900..1000)));
        assert_eq!(byte_range("bytes=-100", 1000), Some(Some(900..1000)));
        assert_eq!(byte_range("bytes=-5000", 1000), Some(Some(0..1000)));
        assert_eq!(byte_range("bytes=999-999", 1000), Some(Some(999..1000)));
        // Outside the file: 416.
        assert_eq!(byte_range("bytes=1000-", 1000), Some(None));
        assert_eq!(byte_range("bytes=-0", 1000), Some(None));
        assert_eq!(byte_range("bytes=0-", 0), Some(None));
        // Ignored: the whole file.
        for ignored in [
            "items=0-1",
            "bytes=5-1",
            "bytes=0-1,5-9",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
        ] {
            assert_eq!(byte_range(ignored, 1000), None, "{ignored}");
        }
    }

    #[test]
    fn quoted_pairs_in_filenames_are_undone() {
        assert_eq!(unquote(r"C:\\x.txt"), r"C:\x.txt");
        assert_eq!(unquote(r#"say \"hi\".txt"#), r#"say "hi".txt"#);
        assert_eq!(unquote("plain.txt"), "plain.txt");
        assert_eq!(unquote(r"trailing\"), r"trailing\");
    }

    #[test]
    fn disposition_escapes() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\""
        );
        assert_eq!(
            content_disposition("a \"quoted\" \\ name.txt"),
            "attachment; filename=\"a \\\"quoted\\\" \\\\ name.txt\""
        );
        assert_eq!(
            content_disposition("résumé.txt"),
            "attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
        );
        // Control characters never reach a header line.
        let v = content_disposition("evil\r\nX-Injected: 1");
        assert!(!v.as_bytes().contains(&b'\n'));
    }
}
