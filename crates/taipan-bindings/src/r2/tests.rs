//! The binding against both stores: the single node's (SQLite and a folder)
//! and the cluster's (a real PostgreSQL, `taipan_cluster::testing`, and a
//! folder object store, `file://`; S3 is covered by the cluster e2e test).

use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use taipan_cluster::testing::TestDatabase;
use taipan_cluster::{Db, Objects};

use super::*;

async fn call(r2: &Arc<dyn Binding>, op: &str, args: Value, payload: &[u8]) -> (Value, Bytes) {
    crate::testing::call(r2.clone(), op, args.clone(), payload)
        .await
        .unwrap_or_else(|e| panic!("{op} {args}: {e:?}"))
}

async fn fails(r2: &Arc<dyn Binding>, op: &str, args: Value, payload: &[u8]) -> BindingError {
    match crate::testing::call(r2.clone(), op, args.clone(), payload).await {
        Ok(reply) => panic!("{op} {args} should fail, got {reply:?}"),
        Err(e) => e,
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A body of `chunks` as the guest would stream it.
fn body(chunks: Vec<Bytes>) -> HyperOutgoingBody {
    let frames = futures::stream::iter(chunks).map(|c| Ok(http_body::Frame::data(c)));
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

/// The single node's store in a fresh folder.
fn local_store() -> (tempfile::TempDir, Arc<dyn R2Store>) {
    let (dir, db) = crate::testing::database();
    let store = local::LocalR2::open(db, dir.path().join("blobs")).unwrap();
    (dir, store)
}

/// A migrated database of its own and a folder object store.
struct Cluster {
    _database: TestDatabase,
    dir: tempfile::TempDir,
    db: Db,
    objects: Objects,
}

impl Cluster {
    async fn new() -> Self {
        let database = TestDatabase::create().await;
        let db = database.connect().await;
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path().join("objects")).unwrap();
        let objects = Objects::open(url.as_str()).unwrap();
        Self {
            _database: database,
            dir,
            db,
            objects,
        }
    }

    fn bucket(&self, name: &str) -> Arc<cluster::ClusterR2> {
        cluster::ClusterR2::new(self.db.clone(), self.objects.clone(), name)
    }

    /// The files under `r2/<bucket>/` in the object store.
    fn blobs(&self, bucket: &str) -> Vec<PathBuf> {
        files(&self.dir.path().join("objects/r2").join(bucket))
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().unwrap().is_dir() {
            found.extend(files(&entry.path()));
        } else {
            found.push(entry.path());
        }
    }
    found.sort();
    found
}

/// The binding as a guest calls it, with no sandbox (`crate::testing`).
async fn put_get_head_delete_through_the_wire_format(store: Arc<dyn R2Store>) {
    let r2: Arc<dyn Binding> = Arc::new(R2Bucket::new(store));
    let custom = json!({"owner": "é"});
    let (object, _) = call(
        &r2,
        "put",
        json!({"key": "a/b.txt", "customMetadata": custom}),
        b"0123456789\n",
    )
    .await;
    assert_eq!(object["size"], 11);
    let (meta, body) = call(
        &r2,
        "get",
        json!({"key": "a/b.txt", "range": {"offset": 2, "length": 3}}),
        b"",
    )
    .await;
    assert_eq!(&body[..], b"234");
    assert_eq!(meta["customMetadata"], custom);
    assert_eq!(meta["range"], json!({"offset": 2, "length": 3}));
    let (meta, body) = call(&r2, "get", json!({"key": "a/b.txt"}), b"").await;
    assert_eq!(&body[..], b"0123456789\n");
    assert_eq!((meta["size"].clone(), meta.get("range")), (json!(11), None));
    let (head, _) = call(&r2, "head", json!({"key": "a/b.txt"}), b"").await;
    assert_eq!(head["size"], 11);
    call(&r2, "delete", json!({"key": "a/b.txt"}), b"").await;
    let (gone, body) = call(&r2, "get", json!({"key": "a/b.txt"}), b"").await;
    assert_eq!((gone, body.len()), (Value::Null, 0));
}

#[tokio::test]
async fn local_put_get_head_delete_through_the_wire_format() {
    let (_dir, store) = local_store();
    put_get_head_delete_through_the_wire_format(store).await;
}

#[tokio::test]
async fn cluster_put_get_head_delete_through_the_wire_format() {
    let cluster = Cluster::new().await;
    put_get_head_delete_through_the_wire_format(cluster.bucket("b")).await;
}

/// Records, overwrites, ranges, empty objects, deletes, and the errors the
/// binding gives, alike on every store.
async fn objects_behave_as_r2(store: Arc<dyn R2Store>) {
    let r2: Arc<dyn Binding> = Arc::new(R2Bucket::new(store));
    // What put answers is what head and get find.
    let http = json!({"contentType": "text/plain", "cacheControl": "no-cache"});
    let custom = json!({"z": "last", "a": "é ☃ \u{0} \"quoted\""});
    let (put, _) = call(
        &r2,
        "put",
        json!({"key": "k", "httpMetadata": http, "customMetadata": custom}),
        b"first",
    )
    .await;
    assert_eq!(put["key"], "k");
    assert_eq!(put["size"], 5);
    assert_eq!(put["etag"], md5_hex(b"first"));
    assert_eq!(
        (&put["httpMetadata"], &put["customMetadata"]),
        (&http, &custom)
    );
    let uploaded = put["uploaded"].as_i64().unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    assert!((now - 60_000..=now).contains(&uploaded), "{uploaded}");
    let (head, _) = call(&r2, "head", json!({"key": "k"}), b"").await;
    assert_eq!(head, put);
    let (got, bytes) = call(&r2, "get", json!({"key": "k", "range": null}), b"").await;
    assert_eq!((&got, &bytes[..]), (&put, &b"first"[..]));

    // An overwrite replaces bytes and metadata; a new version.
    let (again, _) = call(&r2, "put", json!({"key": "k"}), b"second!").await;
    assert_ne!(again["version"], put["version"]);
    let (got, bytes) = call(&r2, "get", json!({"key": "k"}), b"").await;
    assert_eq!((&got, &bytes[..]), (&again, &b"second!"[..]));
    assert_eq!(
        (&got["httpMetadata"], &got["customMetadata"]),
        (&json!({}), &json!({}))
    );
    assert_eq!(got["etag"], md5_hex(b"second!"));

    // Ranges, as R2 takes them.
    for (range, expected, offset, length) in [
        (json!({"offset": 3}), &b"ond!"[..], 3, 4),
        (json!({"offset": 1, "length": 2}), b"ec", 1, 2),
        (json!({"offset": 5, "length": 100}), b"d!", 5, 2),
        (json!({"suffix": 3}), b"nd!", 4, 3),
        (json!({"suffix": 100}), b"second!", 0, 7),
        (json!({"offset": 7}), b"", 7, 0),
        (json!({"length": 0}), b"", 0, 0),
        (json!({}), b"second!", 0, 7),
    ] {
        let (meta, bytes) = call(&r2, "get", json!({"key": "k", "range": range}), b"").await;
        assert_eq!(&bytes[..], expected, "{range}");
        assert_eq!(meta["range"], json!({"offset": offset, "length": length}));
        assert_eq!(meta["size"], 7);
    }
    let past = fails(&r2, "get", json!({"key": "k", "range": {"offset": 8}}), b"").await;
    assert_eq!(past.name, "RangeError");
    assert!(
        past.message.contains("past the object's 7 bytes"),
        "{past:?}"
    );
    // A miss is a miss whatever the range.
    let (miss, _) = call(
        &r2,
        "get",
        json!({"key": "no", "range": {"offset": 9}}),
        b"",
    )
    .await;
    assert_eq!(miss, Value::Null);
    let (miss, _) = call(&r2, "head", json!({"key": "no"}), b"").await;
    assert_eq!(miss, Value::Null);

    // An empty object is an object.
    let (empty, _) = call(&r2, "put", json!({"key": "empty"}), b"").await;
    assert_eq!(
        (&empty["size"], &empty["etag"]),
        (&json!(0), &json!(md5_hex(b"")))
    );
    let (got, bytes) = call(&r2, "get", json!({"key": "empty"}), b"").await;
    assert_eq!((got["size"].clone(), bytes.len()), (json!(0), 0));
    let (got, bytes) = call(
        &r2,
        "get",
        json!({"key": "empty", "range": {"suffix": 5}}),
        b"",
    )
    .await;
    assert_eq!(
        (got["range"].clone(), bytes.len()),
        (json!({"offset": 0, "length": 0}), 0)
    );

    // Deleting many at once, missing ones too; deleting twice.
    call(&r2, "put", json!({"key": "x"}), b"x").await;
    call(&r2, "delete", json!({"keys": ["k", "x", "never"]}), b"").await;
    call(&r2, "delete", json!({"keys": ["k"]}), b"").await;
    call(&r2, "delete", json!({"keys": []}), b"").await;
    for key in ["k", "x"] {
        let (gone, _) = call(&r2, "head", json!({"key": key}), b"").await;
        assert_eq!(gone, Value::Null);
    }
    let (left, _) = call(&r2, "list", json!({}), b"").await;
    assert_eq!(left["objects"][0]["key"], "empty");
    assert_eq!(left["objects"].as_array().unwrap().len(), 1);

    // The binding's checks, before any storage.
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    for (op, args, name) in [
        ("put", json!({"key": ""}), "TypeError"),
        ("put", json!({"key": long}), "TypeError"),
        ("get", json!({"key": long}), "TypeError"),
        ("head", json!({}), "TypeError"),
        ("delete", json!({"keys": ["a", ""]}), "TypeError"),
        ("delete", json!({"keys": ["a", 1]}), "TypeError"),
        (
            "put",
            json!({"key": "m", "customMetadata": "no"}),
            "TypeError",
        ),
        ("put", json!({"key": "m", "httpMetadata": []}), "TypeError"),
        (
            "put",
            json!({"key": "m", "customMetadata": {"v": "x".repeat(MAX_CUSTOM_METADATA_BYTES)}}),
            "RangeError",
        ),
        ("list", json!({"limit": 0}), "RangeError"),
        ("list", json!({"limit": MAX_LIST_LIMIT + 1}), "RangeError"),
        ("list", json!({"limit": "1"}), "TypeError"),
        ("frob", json!({}), "TypeError"),
    ] {
        let e = fails(&r2, op, args.clone(), b"body").await;
        assert_eq!(e.name, name, "{op} {args}: {e:?}");
    }
    let (miss, _) = call(&r2, "head", json!({"key": "m"}), b"").await;
    assert_eq!(miss, Value::Null, "a refused put stores nothing");
}

#[tokio::test]
async fn local_objects_behave_as_r2() {
    let (_dir, store) = local_store();
    objects_behave_as_r2(store).await;
}

#[tokio::test]
async fn cluster_objects_behave_as_r2() {
    let cluster = Cluster::new().await;
    objects_behave_as_r2(cluster.bucket("b")).await;
    // What was deleted or replaced left no bytes behind: one blob, "empty"'s.
    assert_eq!(cluster.blobs("b").len(), 1, "{:?}", cluster.blobs("b"));
}

/// Listing: byte order, exact prefixes, delimiters, limits and cursors.
async fn lists_behave_as_r2(store: Arc<dyn R2Store>) {
    let r2: Arc<dyn Binding> = Arc::new(R2Bucket::new(store));
    let mut keys: Vec<String> = [
        "B",
        "a",
        "a%",
        "a%b",
        "a_",
        "a_b",
        "ab",
        "a\\",
        "a/1",
        "a/2",
        "a/x/1",
        "z",
        "é",
        "\u{10FFFF}",
    ]
    .map(String::from)
    .to_vec();
    keys.extend((1..=40).map(|i| format!("d/{i}")));
    for key in &keys {
        call(&r2, "put", json!({"key": key}), key.as_bytes()).await;
    }
    keys.sort(); // Rust sorts strings by their bytes, as R2 does.
    let names = |listing: &Value, field: &str| -> Vec<String> {
        listing[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.get("key").unwrap_or(o).as_str().unwrap().to_string())
            .collect()
    };
    let list = |args: Value| call(&r2, "list", args, b"");

    let (all, _) = list(json!({})).await;
    assert_eq!(names(&all, "objects"), keys);
    assert_eq!(
        (&all["truncated"], all.get("cursor")),
        (&json!(false), None)
    );
    let (one, _) = list(json!({"prefix": "a/x/1"})).await;
    assert_eq!(one["objects"][0]["size"], 5);
    assert_eq!(one["objects"][0]["etag"], md5_hex(b"a/x/1"));

    // Prefixes are exact: SQL wildcards, escapes and the last code point.
    for (prefix, expected) in [
        ("a%", vec!["a%", "a%b"]),
        ("a_", vec!["a_", "a_b"]),
        ("a\\", vec!["a\\"]),
        ("\u{10FFFF}", vec!["\u{10FFFF}"]),
        ("é", vec!["é"]),
        ("nothing", vec![]),
    ] {
        let (listing, _) = list(json!({"prefix": prefix})).await;
        assert_eq!(names(&listing, "objects"), expected, "prefix {prefix:?}");
    }

    // Delimiters roll keys up into prefixes.
    let (top, _) = list(json!({"delimiter": "/"})).await;
    let flat: Vec<String> = keys.iter().filter(|k| !k.contains('/')).cloned().collect();
    assert_eq!(names(&top, "objects"), flat);
    assert_eq!(names(&top, "delimitedPrefixes"), ["a/", "d/"]);
    let (under, _) = list(json!({"prefix": "a/", "delimiter": "/"})).await;
    assert_eq!(names(&under, "objects"), ["a/1", "a/2"]);
    assert_eq!(names(&under, "delimitedPrefixes"), ["a/x/"]);

    // Pages: every key once, in order, the cursor carrying on.
    let mut walked = Vec::new();
    let mut cursor = None::<String>;
    loop {
        let mut args = json!({"limit": 7});
        if let Some(cursor) = &cursor {
            args["cursor"] = json!(cursor);
        }
        let (page, _) = list(args).await;
        let page_keys = names(&page, "objects");
        walked.extend(page_keys.clone());
        if page["truncated"] == json!(false) {
            assert_eq!(page.get("cursor"), None);
            break;
        }
        assert_eq!(page_keys.len(), 7);
        assert_eq!(page["cursor"], json!(page_keys.last().unwrap()));
        cursor = page["cursor"].as_str().map(String::from);
    }
    assert_eq!(walked, keys);

    // A limit counts objects and prefixes; the 40 keys under "d/" roll up
    // into one (read from the store in growing pages).
    let (page, _) = list(json!({"prefix": "d", "delimiter": "/", "limit": 1})).await;
    assert_eq!(names(&page, "delimitedPrefixes"), ["d/"]);
    let (page, _) = list(json!({"prefix": "a/", "delimiter": "/", "limit": 2})).await;
    assert_eq!(names(&page, "objects"), ["a/1", "a/2"]);
    assert_eq!(
        (&page["truncated"], &page["cursor"]),
        (&json!(true), &json!("a/2"))
    );
    let (rest, _) = list(json!({"prefix": "a/", "delimiter": "/", "cursor": "a/2"})).await;
    assert_eq!(names(&rest, "delimitedPrefixes"), ["a/x/"]);
    assert_eq!(rest["truncated"], json!(false));
    let (page, _) = list(json!({"delimiter": "/", "cursor": "ab", "limit": 2})).await;
    assert_eq!(names(&page, "delimitedPrefixes"), ["d/"]);
    assert_eq!(names(&page, "objects"), ["z"]);
    assert_eq!(
        (&page["truncated"], &page["cursor"]),
        (&json!(true), &json!("z"))
    );
}

#[tokio::test]
async fn local_lists_behave_as_r2() {
    let (_dir, store) = local_store();
    lists_behave_as_r2(store).await;
}

#[tokio::test]
async fn cluster_lists_behave_as_r2() {
    let cluster = Cluster::new().await;
    lists_behave_as_r2(cluster.bucket("b")).await;
}

/// An object of several of the object storage's upload parts streams in
/// and out whole, and by ranges across a part's edge.
async fn big_objects_stream(store: Arc<dyn R2Store>) {
    let part = taipan_cluster::objects::UPLOAD_PART_BYTES;
    let big: Bytes = (0..2 * part + 4321).map(|i| (i % 253) as u8).collect();
    let chunks: Vec<Bytes> = big.chunks(64 << 10).map(Bytes::copy_from_slice).collect();
    let object = store
        .put("big", Upload::new(body(chunks)), json!({}), json!({}))
        .await
        .unwrap();
    assert_eq!(object.size, big.len() as u64);
    assert_eq!(object.etag, md5_hex(&big));
    let r2: Arc<dyn Binding> = Arc::new(R2Bucket::new(store));
    let (meta, bytes) = call(&r2, "get", json!({"key": "big"}), b"").await;
    assert_eq!(meta, object.to_json());
    assert!(bytes == big, "the whole object");
    let (offset, length) = (part - 10, 20);
    let (_, bytes) = call(
        &r2,
        "get",
        json!({"key": "big", "range": {"offset": offset, "length": length}}),
        b"",
    )
    .await;
    assert_eq!(&bytes[..], &big[offset..offset + length]);
    let (_, bytes) = call(
        &r2,
        "get",
        json!({"key": "big", "range": {"suffix": 5}}),
        b"",
    )
    .await;
    assert_eq!(&bytes[..], &big[big.len() - 5..]);
}

#[tokio::test]
async fn local_big_objects_stream() {
    let (_dir, store) = local_store();
    big_objects_stream(store).await;
}

#[tokio::test]
async fn cluster_big_objects_stream() {
    let cluster = Cluster::new().await;
    big_objects_stream(cluster.bucket("b")).await;
    assert_eq!(cluster.blobs("b").len(), 1);
}

#[test]
fn ranges() {
    let range = |r: Option<&Value>, size| ByteRange::parse(r).resolve(size);
    assert_eq!(range(None, 10).unwrap(), (0, 10));
    assert_eq!(range(Some(&Value::Null), 10).unwrap(), (0, 10));
    assert_eq!(
        range(Some(&json!({"offset": 2, "length": 3})), 10).unwrap(),
        (2, 3)
    );
    assert_eq!(range(Some(&json!({"offset": 8})), 10).unwrap(), (8, 2));
    assert_eq!(range(Some(&json!({"suffix": 4})), 10).unwrap(), (6, 4));
    assert_eq!(range(Some(&json!({"suffix": 40})), 10).unwrap(), (0, 10));
    assert!(range(Some(&json!({"offset": 11})), 10).is_err());
}

/// The single node's files are where they always were: existing buckets
/// keep working.
#[tokio::test]
async fn local_buckets_keep_their_layout() {
    let (dir, db) = crate::testing::database();
    let blobs = dir.path().join("blobs");
    // A bucket as an earlier taipan left it.
    db.with_blocking(|conn| {
        conn.execute_batch(
            "CREATE TABLE objects (
                key TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
                uploaded INTEGER NOT NULL, http_metadata TEXT NOT NULL,
                custom_metadata TEXT NOT NULL, version TEXT NOT NULL
            ) WITHOUT ROWID;
            INSERT INTO objects VALUES
              ('old', 3, 'e', 1700000000000, '{\"contentType\":\"a/b\"}', '{}', 'v1');",
        )
    })
    .unwrap();
    let hex = |key: &str| -> String {
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let old = blobs.join(&hex("old")[..2]).join(hex("old"));
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, "abc").unwrap();

    let r2: Arc<dyn Binding> = Arc::new(R2Bucket::open(db.clone(), blobs.clone()).unwrap());
    let (meta, bytes) = call(&r2, "get", json!({"key": "old"}), b"").await;
    assert_eq!(&bytes[..], b"abc");
    assert_eq!(
        meta,
        json!({"key": "old", "size": 3, "etag": "e", "uploaded": 1700000000000i64,
               "httpMetadata": {"contentType": "a/b"}, "customMetadata": {}, "version": "v1"})
    );
    call(&r2, "put", json!({"key": "new"}), b"xyz").await;
    let new = blobs.join(&hex("new")[..2]).join(hex("new"));
    assert_eq!(std::fs::read(&new).unwrap(), b"xyz");
    let size: i64 = db
        .with_blocking(|conn| {
            conn.query_row("SELECT size FROM objects WHERE key = 'new'", [], |r| {
                r.get(0)
            })
        })
        .unwrap();
    assert_eq!(size, 3);
    call(&r2, "delete", json!({"key": "new"}), b"").await;
    assert!(!new.exists());
}

/// Buckets share the cluster's table and object storage, never their
/// objects; keys PostgreSQL cannot hold (NUL) are refused, not mangled.
#[tokio::test]
async fn cluster_buckets_are_apart() {
    let cluster = Cluster::new().await;
    let (one, two): (Arc<dyn Binding>, Arc<dyn Binding>) = (
        Arc::new(R2Bucket::new(cluster.bucket("one"))),
        Arc::new(R2Bucket::new(cluster.bucket("one%"))),
    );
    call(&one, "put", json!({"key": "k"}), b"1").await;
    call(&two, "put", json!({"key": "k"}), b"2").await;
    call(&two, "put", json!({"key": "only-two"}), b"2").await;
    let (_, bytes) = call(&one, "get", json!({"key": "k"}), b"").await;
    assert_eq!(&bytes[..], b"1");
    let (listing, _) = call(&one, "list", json!({}), b"").await;
    assert_eq!(listing["objects"].as_array().unwrap().len(), 1);
    call(&two, "delete", json!({"keys": ["k", "only-two"]}), b"").await;
    let (still, _) = call(&one, "head", json!({"key": "k"}), b"").await;
    assert_eq!(still["size"], 1);
    assert_eq!(cluster.blobs("one").len(), 1);

    let e = fails(&one, "put", json!({"key": "a\u{0}b"}), b"v").await;
    assert!(e.message.contains("NUL"), "{e:?}");
    for op in ["get", "head"] {
        let (miss, _) = call(&one, op, json!({"key": "a\u{0}b"}), b"").await;
        assert_eq!(miss, Value::Null, "{op}");
    }
    call(&one, "delete", json!({"keys": ["a\u{0}b", "k"]}), b"").await;
    call(&one, "put", json!({"key": "k"}), b"1").await;
    let (listing, _) = call(&one, "list", json!({"prefix": "k\u{0}"}), b"").await;
    assert_eq!(listing["objects"], json!([]));
    let (listing, _) = call(&one, "list", json!({"cursor": "\u{0}"}), b"").await;
    assert_eq!(listing["objects"][0]["key"], "k");
    let (listing, _) = call(&one, "list", json!({"cursor": "k\u{0}"}), b"").await;
    assert_eq!(listing["objects"], json!([]));
}

/// Readers racing writers of one key always get a whole object whose
/// record describes its bytes; racing first puts of a new key leave one
/// row and one blob, none orphaned.
#[tokio::test]
async fn cluster_readers_never_see_half_a_write() {
    let cluster = Cluster::new().await;
    let store = cluster.bucket("b");
    let r2: Arc<dyn Binding> = Arc::new(R2Bucket::new(store.clone()));
    // Bodies of one repeated byte, of a length the byte gives.
    let body_of = |n: u8| vec![n; 1000 + 37 * n as usize];
    let first = body_of(0);
    call(&r2, "put", json!({"key": "hot"}), &first).await;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..4u8 {
        let store = store.clone();
        tasks.spawn(async move {
            for round in 0..10u8 {
                let n = 1 + writer * 10 + round;
                let chunks = vec![Bytes::from(vec![n; 1000 + 37 * n as usize])];
                store
                    .put(
                        "hot",
                        Upload::new(body(chunks)),
                        json!({}),
                        json!({"n": n.to_string()}),
                    )
                    .await
                    .unwrap();
            }
        });
    }
    for _ in 0..4 {
        let r2 = r2.clone();
        tasks.spawn(async move {
            for _ in 0..25 {
                let (meta, bytes) = call(&r2, "get", json!({"key": "hot"}), b"").await;
                let n = bytes[0];
                assert_eq!(bytes.len(), 1000 + 37 * n as usize);
                assert!(bytes.iter().all(|&b| b == n));
                assert_eq!(meta["size"], bytes.len());
                assert_eq!(meta["etag"], md5_hex(&bytes));
                if n > 0 {
                    assert_eq!(meta["customMetadata"]["n"], n.to_string());
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(cluster.blobs("b").len(), 1, "replaced blobs are deleted");

    for i in 0..8u8 {
        let store = store.clone();
        tasks.spawn(async move {
            let chunks = vec![Bytes::from(vec![i; 10])];
            store
                .put("new", Upload::new(body(chunks)), json!({}), json!({}))
                .await
                .unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(cluster.blobs("b").len(), 2, "{:?}", cluster.blobs("b"));
    let (_, bytes) = call(&r2, "get", json!({"key": "new"}), b"").await;
    assert_eq!(bytes.len(), 10);
}

/// A put refused midway (over the size limit is checked as the body
/// streams; here the body fails) stores nothing: no row, no blob.
#[tokio::test]
async fn cluster_failed_puts_leave_nothing() {
    let cluster = Cluster::new().await;
    let store = cluster.bucket("b");
    let part = taipan_cluster::objects::UPLOAD_PART_BYTES;
    // Past one part (a multipart upload has begun), then an error.
    let frames = futures::stream::iter([
        Ok(http_body::Frame::data(Bytes::from(vec![1u8; part + 10]))),
        Err(wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::ConnectionTerminated),
    ]);
    let failing = http_body_util::StreamBody::new(frames).boxed_unsync();
    let e = store
        .put("k", Upload::new(failing), json!({}), json!({}))
        .await
        .err()
        .unwrap();
    assert!(e.message.contains("reading the body failed"), "{e:?}");
    assert!(store.head("k").await.unwrap().is_none());
    assert_eq!(cluster.blobs("b"), Vec::<PathBuf>::new());
    // The bytes of a record gone from the object storage: an error, not
    // someone else's bytes.
    call_put(&store, "lost", b"abc").await;
    for blob in cluster.blobs("b") {
        std::fs::remove_file(blob).unwrap();
    }
    let r2: Arc<dyn Binding> = Arc::new(R2Bucket::new(store));
    let e = fails(&r2, "get", json!({"key": "lost"}), b"").await;
    assert!(e.message.contains("lost the bytes"), "{e:?}");
}

async fn call_put(store: &Arc<cluster::ClusterR2>, key: &str, bytes: &'static [u8]) {
    let chunks = vec![Bytes::from_static(bytes)];
    store
        .put(key, Upload::new(body(chunks)), json!({}), json!({}))
        .await
        .unwrap();
}

/// A worker of a node in a cluster keeps its bucket in the cluster: the
/// record in the database, the bytes in the object storage, no file.
#[tokio::test]
async fn clustered_stores_open_buckets_in_the_cluster() {
    use taipan_runtime::WorkerHost as _;

    let mut config = taipan_config::Bindings::default();
    config.r2.push(taipan_config::bindings::R2Bucket {
        binding: "FILES".into(),
        bucket_name: "files".into(),
    });
    let clustered = crate::testing::clustered_host(&config).await;
    let (cluster, stores, host) = (&clustered.cluster, &clustered.stores, &clustered.host);
    let request = http::Request::post("http://binding/put")
        .body(body(vec![Bytes::from_static(b"{\"key\":\"k\"}\nhello")]))
        .unwrap();
    let response = host.binding("FILES", "put", request).await.unwrap();
    let status = response.status();
    let reply = response.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{status}: {reply:?}");

    let client = cluster.db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT blob, size FROM r2_objects WHERE bucket = 'files' AND key = 'k'",
            &[],
        )
        .await
        .unwrap();
    let blob: String = row.get(0);
    assert!(blob.starts_with("r2/files/"), "{blob}");
    assert_eq!(row.get::<_, i64>(1), 5);
    assert_eq!(
        &cluster.objects.get(&blob).await.unwrap().unwrap()[..],
        b"hello"
    );
    assert!(!stores.r2_index("files").exists());
    assert!(!stores.r2_blobs("files").exists());
}
