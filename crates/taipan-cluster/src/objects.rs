//! Object storage: builds and asset trees, each one object (a zstd tar)
//! under a content id, so every node fetches exactly what was deployed.
//! `s3://bucket[/prefix]` (endpoint, region and credentials from the usual
//! AWS variables) or `file:///dir` (a mount every node shares).

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart,
};

/// zstd level for trees: fast to write, a third of the size.
const ZSTD_LEVEL: i32 = 3;

/// The part size of a streamed upload ([`Objects::writer`]): S3's least
/// (every part but the last must be at least 5 MiB). An object no larger
/// than one part is stored with a single request instead.
pub const UPLOAD_PART_BYTES: usize = 5 << 20;
/// Parts of one streamed upload in flight at once: with the part being
/// filled, what an upload holds in memory is at most this plus one parts.
const UPLOAD_CONCURRENCY: usize = 2;

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl Objects {
    pub fn open(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url).with_context(|| {
            format!("{url:?} is not an object storage URL\nhint: use s3://bucket or file:///dir")
        })?;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match parsed.scheme() {
            "s3" => {
                let bucket = parsed.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    bail!("{url:?} names no bucket\nhint: s3://bucket or s3://bucket/prefix");
                }
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .with_context(|| format!("opening {url:?}\nhint: set AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for a plain-http endpoint)"))?;
                (Arc::new(store), parsed.path().trim_matches('/').to_string())
            }
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| anyhow::anyhow!("{url:?} is not a local folder"))?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating \"{}\"", dir.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .with_context(|| format!("opening \"{}\"", dir.display()))?;
                (Arc::new(store), String::new())
            }
            other => bail!(
                "object storage {other:?} is not supported\nhint: use s3://bucket or file:///dir"
            ),
        };
        Ok(Self {
            store,
            prefix,
            url: url.to_string(),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Fail early, with a hint, when the store cannot be reached.
    pub async fn check(&self) -> Result<()> {
        match self.store.head(&self.path(".taipan-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(anyhow::anyhow!(e)).with_context(|| {
                format!(
                    "could not reach the object storage {:?}\nhint: check the bucket exists and the credentials",
                    self.url
                )
            }),
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("looking for {key:?} in the object storage")),
        }
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .with_context(|| format!("storing {key:?} in the object storage"))?;
        Ok(())
    }

    /// Store `bytes` unless `key` exists; true if this call created it.
    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(key), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("storing {key:?} in the object storage")),
        }
    }

    /// The object's bytes, or None when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>> {
        match self.store.get(&self.path(key)).await {
            Ok(result) => {
                Ok(Some(result.bytes().await.with_context(|| {
                    format!("reading {key:?} from the object storage")
                })?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {key:?} from the object storage")),
        }
    }

    /// The object's bytes as they arrive, only those in `range` if given
    /// (it must be non-empty and start inside the object), or None when
    /// there is no such object. Errors past the start (the connection lost
    /// midway) end the stream with an error.
    pub async fn get_stream(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<BoxStream<'static, std::io::Result<Bytes>>>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self.store.get_opts(&self.path(key), options).await {
            Ok(result) => Ok(Some(
                result.into_stream().map_err(std::io::Error::other).boxed(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {key:?} from the object storage")),
        }
    }

    /// Write `key` chunk by chunk ([`ObjectWriter`]), for objects too big to
    /// hold in memory. Nothing is visible at `key` until
    /// [`ObjectWriter::finish`] returns.
    pub fn writer(&self, key: &str) -> ObjectWriter {
        ObjectWriter {
            store: self.store.clone(),
            path: self.path(key),
            key: key.to_string(),
            buffered: Vec::new(),
            buffered_bytes: 0,
            upload: None,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {key:?} from the object storage")),
        }
    }

    /// Upload the folder `dir` as `key` unless it is there already (trees
    /// are content-addressed: same key, same content).
    pub async fn put_tree(&self, key: &str, dir: &Path) -> Result<()> {
        if self.exists(key).await? {
            return Ok(());
        }
        let dir = dir.to_path_buf();
        let packed = tokio::task::spawn_blocking(move || pack(&dir))
            .await
            .context("the packing task failed")??;
        self.put(key, packed).await
    }

    /// Download `key` into the folder `dest` (made next to it, then renamed:
    /// a reader never sees half a tree). False when there is no such object.
    pub async fn get_tree(&self, key: &str, dest: &Path) -> Result<bool> {
        let Some(bytes) = self.get(key).await? else {
            return Ok(false);
        };
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || unpack(&bytes, &dest))
            .await
            .context("the unpacking task failed")??;
        Ok(true)
    }
}

/// An object being written ([`Objects::writer`]): the first part is kept in
/// memory, so a small object takes one `put`; past it, a multipart upload
/// sends parts as they fill, a few at once (the writer waits for one to
/// finish before taking more). Dropped before [`ObjectWriter::finish`], the
/// upload is aborted in the background and nothing is stored.
pub struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    key: String,
    /// Before the upload starts: the chunks so far.
    buffered: Vec<Bytes>,
    buffered_bytes: usize,
    upload: Option<WriteMultipart>,
}

impl ObjectWriter {
    /// Append `bytes`; waits while the parts in flight are at the limit.
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        let context = || format!("storing {:?} in the object storage", self.key);
        if let Some(upload) = &mut self.upload {
            upload
                .wait_for_capacity(UPLOAD_CONCURRENCY)
                .await
                .with_context(context)?;
            upload.put(bytes);
            return Ok(());
        }
        self.buffered_bytes += bytes.len();
        self.buffered.push(bytes);
        if self.buffered_bytes > UPLOAD_PART_BYTES {
            let started = self
                .store
                .put_multipart(&self.path)
                .await
                .with_context(context)?;
            let mut upload = WriteMultipart::new_with_chunk_size(started, UPLOAD_PART_BYTES);
            for chunk in self.buffered.drain(..) {
                upload.put(chunk);
            }
            self.buffered_bytes = 0;
            self.upload = Some(upload);
        }
        Ok(())
    }

    /// Store what was written: the object appears whole, at once.
    pub async fn finish(mut self) -> Result<()> {
        let result = match self.upload.take() {
            Some(upload) => upload.finish().await.map(drop),
            None => {
                let payload: PutPayload = std::mem::take(&mut self.buffered).into_iter().collect();
                self.store.put(&self.path, payload).await.map(drop)
            }
        };
        result.with_context(|| format!("storing {:?} in the object storage", self.key))
    }

    /// Give up: the parts sent so far are discarded.
    pub async fn abort(mut self) -> Result<()> {
        match self.upload.take() {
            Some(upload) => upload
                .abort()
                .await
                .with_context(|| format!("aborting the upload of {:?}", self.key)),
            None => Ok(()),
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// Machine code is per CPU and engine: never part of a tree (a node
/// compiles its own, or fetches one made for its fingerprint).
fn left_out(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.ends_with(".cwasm") || name.ends_with(".cwasm.tmp")
}

fn pack(dir: &Path) -> Result<Vec<u8>> {
    let encoder = zstd::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(true);
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let folder = dir.join(&relative);
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .with_context(|| format!("packing \"{}\"", folder.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if left_out(&entry.file_name()) {
                continue;
            }
            let path = relative.join(entry.file_name());
            // Metadata through links: a tree may hold hard or soft links
            // into a package cache; the archive holds their content.
            if std::fs::metadata(entry.path())?.is_dir() {
                tar.append_dir(&path, entry.path())?;
                stack.push(path);
            } else {
                tar.append_path_with_name(entry.path(), &path)
                    .with_context(|| format!("packing \"{}\"", entry.path().display()))?;
            }
        }
    }
    Ok(tar.into_inner()?.finish()?)
}

fn unpack(bytes: &[u8], dest: &Path) -> Result<()> {
    let parent = dest.parent().context("a destination without a folder")?;
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)?;
    let mut archive = tar::Archive::new(zstd::Decoder::new(bytes)?);
    archive
        .unpack(staging.path())
        .with_context(|| format!("unpacking into \"{}\"", staging.path().display()))?;
    match std::fs::rename(staging.keep(), dest) {
        Ok(()) => Ok(()),
        // Another task fetched the same tree meanwhile: same content.
        Err(_) if dest.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("moving into \"{}\"", dest.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trees_round_trip_through_a_folder_store() {
        let tmp = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(tmp.path().join("store")).unwrap();
        let objects = Objects::open(url.as_str()).unwrap();
        objects.check().await.unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::write(src.join("a/b/f.txt"), "hello").unwrap();
        std::fs::write(src.join("top"), vec![7u8; 100_000]).unwrap();
        std::fs::write(src.join("component.cwasm"), "machine code").unwrap();
        assert!(!objects.exists("t.tar.zst").await.unwrap());
        objects.put_tree("t.tar.zst", &src).await.unwrap();
        assert!(objects.exists("t.tar.zst").await.unwrap());
        let dest = tmp.path().join("dest/t");
        assert!(objects.get_tree("t.tar.zst", &dest).await.unwrap());
        assert_eq!(
            std::fs::read_to_string(dest.join("a/b/f.txt")).unwrap(),
            "hello"
        );
        assert_eq!(std::fs::read(dest.join("top")).unwrap().len(), 100_000);
        assert!(!dest.join("component.cwasm").exists());
        assert!(
            !objects
                .get_tree("missing", &tmp.path().join("m"))
                .await
                .unwrap()
        );
        assert!(objects.put_new("once", b"1".to_vec()).await.unwrap());
        assert!(!objects.put_new("once", b"2".to_vec()).await.unwrap());
        assert_eq!(&objects.get("once").await.unwrap().unwrap()[..], b"1");
        objects.delete("once").await.unwrap();
        assert!(objects.get("once").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn streams_are_written_in_parts_and_read_in_ranges() {
        let tmp = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(tmp.path().join("store")).unwrap();
        let objects = Objects::open(url.as_str()).unwrap();
        let read = |key: &'static str, range: Option<Range<u64>>| {
            let objects = objects.clone();
            async move {
                let stream = objects.get_stream(key, range).await.unwrap()?;
                let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
                Some(chunks.concat())
            }
        };
        // Over two parts: a multipart upload, invisible until finished.
        let big: Vec<u8> = (0..2 * UPLOAD_PART_BYTES + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut writer = objects.writer("r2/b/big");
        for chunk in big.chunks(300_000) {
            writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        assert!(!objects.exists("r2/b/big").await.unwrap());
        writer.finish().await.unwrap();
        assert_eq!(read("r2/b/big", None).await.unwrap(), big);
        let middle = UPLOAD_PART_BYTES as u64 - 5..UPLOAD_PART_BYTES as u64 + 5;
        assert_eq!(
            read("r2/b/big", Some(middle.clone())).await.unwrap(),
            big[middle.start as usize..middle.end as usize]
        );
        assert!(read("r2/b/missing", None).await.is_none());
        // Under a part: one put.
        let mut writer = objects.writer("small");
        writer.write(Bytes::from_static(b"hel")).await.unwrap();
        writer.write(Bytes::from_static(b"lo")).await.unwrap();
        writer.finish().await.unwrap();
        assert_eq!(read("small", None).await.unwrap(), b"hello");
        objects.writer("empty").finish().await.unwrap();
        assert_eq!(read("empty", None).await.unwrap(), b"");
        // Abandoned, aborted: nothing stored.
        for abort in [true, false] {
            let mut writer = objects.writer("abandoned");
            writer
                .write(Bytes::from(vec![1u8; UPLOAD_PART_BYTES + 1]))
                .await
                .unwrap();
            if abort {
                writer.abort().await.unwrap();
            } else {
                drop(writer);
            }
            assert!(!objects.exists("abandoned").await.unwrap());
        }
    }

    #[test]
    fn bad_urls_say_what_to_use() {
        let e = Objects::open("ftp://x").err().unwrap().to_string();
        assert!(e.contains("s3://bucket"), "{e}");
        assert!(Objects::open("s3://").is_err());
    }
}
