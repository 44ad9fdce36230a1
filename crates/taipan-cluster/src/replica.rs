//! SQLite databases (a D1 database, a Durable Object's storage) that lose no
//! acknowledged write when their node dies: every commit's WAL frames are in
//! PostgreSQL before the write is acknowledged (Litestream-style WAL
//! shipping, synchronous).
//!
//! A database has one owner node at a time, the holder of its lease (a row
//! of `leases`, with a fencing token). The owner keeps a local SQLite file
//! in WAL mode, checkpointed only by this module. Durable state is:
//!
//! - `sqlite_replicas (name, generation, snapshot)`: the current generation
//!   and the object key of its snapshot, a zstd-compressed copy of the main
//!   database file (none for generation 0 that never checkpointed: an empty
//!   database);
//! - `sqlite_wal (name, generation, seq, bytes)`: the generation's `-wal`
//!   file, in pieces: their concatenation in `seq` order is a prefix of the
//!   owner's `-wal` file that ends at a commit frame.
//!
//! The database's content is the snapshot plus that WAL, which is exactly
//! what [`ReplicatedDb::restore`] puts on disk before SQLite opens it
//! (SQLite's WAL recovery then replays it).
//!
//! # Using it
//!
//! Right after acquiring the lease, [`ReplicatedDb::restore`]; then run all
//! work through [`ReplicatedDb::with`] on a blocking thread (it talks to
//! PostgreSQL through the runtime's handle). Acknowledge a write only when
//! `with` returned `Ok`. After any [`ReplicaError`] the handle refuses more
//! work: drop it, and restore again if the lease is still ours. Never keep
//! two handles of one name open in a process, and never trust the local
//! files after the handle is gone (closing it checkpoints and deletes the
//! WAL): `restore` always rebuilds them from PostgreSQL.
//!
//! # What is shipped
//!
//! After each `with`, the `-wal` file's bytes past the shipped offset are
//! scanned frame by frame, as SQLite's own recovery does (salts equal to the
//! header's, cumulative checksums valid), and only the bytes up to the last
//! *commit* frame (non-zero "database size" field) are shipped:
//!
//! - a transaction rewrites its own frames in place (and their checksums at
//!   commit), but only frames past the last commit: `with` reads after the
//!   closure has committed or rolled back, and from the last commit on;
//! - a rolled-back transaction that spilled to the WAL leaves its frames
//!   behind, valid but uncommitted, and the next transaction overwrites them
//!   in place: they are never shipped, as no commit frame follows them;
//! - after our `TRUNCATE` checkpoint the file is empty and the next commit
//!   writes a new header (new salts) at offset 0: a new generation starts
//!   there, so its piece 0 begins with that header;
//! - a WAL reset we did not make (shorter file, other salts) cannot be
//!   appended to what is shipped: a checkpoint to a new generation follows
//!   at once. The closure cannot cause one through SQL: an authorizer
//!   refuses `PRAGMA wal_checkpoint`, changing `journal_mode` or
//!   `wal_autocheckpoint`, and `ATTACH` (an attached file is not shipped).
//!
//! A closure that only reads leaves the WAL as it was: one `stat`, no
//! round trip. Every write costs one PostgreSQL statement.
//!
//! # Fencing
//!
//! Every PostgreSQL write is conditional on the lease row still naming us
//! with our token and an unexpired `expires`, checked in the same statement
//! or transaction, which also takes a `FOR SHARE` lock on that row until it
//! commits. The lock matters: `now()` is the transaction's start, so without
//! it a write could pass the check just before expiry and commit after a new
//! owner took over and restored. With it, taking the lease over (an
//! `UPDATE`, `DELETE` or upsert of the row) waits for our write to commit,
//! and the new owner's restore, which follows the takeover, sees the write;
//! or the takeover goes first, and our check fails ([`ReplicaError::LostLease`]).
//! Objects are written under fresh keys, never overwritten, and deleted only
//! once a committed row stopped naming them: a stale owner cannot damage
//! what the current one relies on.
//!
//! # Checkpoints, and crashes between their steps
//!
//! When the `-wal` file passes [`CHECKPOINT_BYTES`] (after shipping), or on
//! [`ReplicatedDb::checkpoint`]:
//!
//! 1. everything committed is shipped (rows of generation G);
//! 2. `PRAGMA wal_checkpoint(TRUNCATE)`: the local main file holds it all;
//! 3. the main file is uploaded as a new snapshot, under a key of its own;
//! 4. one fenced transaction: generation G+1, that snapshot, and the rows of
//!    older generations deleted;
//! 5. the previous snapshot object is deleted (best effort).
//!
//! A crash before step 4 commits leaves PostgreSQL as it was after step 1:
//! G's snapshot and rows, the whole database (steps 2 and 3 only touched
//! the local file and a key nothing names: an orphan object at worst). Step
//! 4 is atomic, and the snapshot it names holds exactly G's snapshot plus
//! its rows: nothing ran in between. A crash after it leaves at worst the
//! old snapshot behind (an orphan, no longer named). If step 4 fails
//! without our knowing whether it committed (the connection broke), the
//! handle is poisoned and the next restore reads whichever state won; both
//! are complete.
//!
//! The snapshot is read into memory and uploaded in one piece; restore
//! holds one generation's WAL in memory (about [`CHECKPOINT_BYTES`] plus the
//! last transaction).

use std::fs::File;
use std::io::{ErrorKind, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use rusqlite::Connection;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use sha2::Digest as _;
use tokio::runtime::Handle;

use crate::{Db, Objects};

/// A `-wal` file this long (in bytes, after shipping) is checkpointed into a
/// new snapshot. Bounds what a restore downloads beyond the snapshot, and
/// how much a rolled-back transaction's leftover frames cost to rescan.
pub const CHECKPOINT_BYTES: u64 = 4 << 20;

/// WAL bytes per `sqlite_wal` row: a big transaction becomes several rows
/// (of one statement), far from PostgreSQL's 1 GB limit on a value.
const PIECE_BYTES: usize = 1 << 20;

/// zstd level for snapshots: fast, and SQLite files compress well.
const ZSTD_LEVEL: i32 = 3;

/// Proof of ownership: the lease row `lease` held by `owner` with `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub owner: String,
    pub token: i64,
}

/// Why a database could not be restored, or a write could not be made
/// durable. Either way, nothing of the failed call is acknowledged, and the
/// handle refuses further work: drop it.
#[derive(Debug)]
pub enum ReplicaError {
    /// The lease is no longer ours (expired, or another node took it over).
    /// Nothing was shipped: fail the request, drop the handle, and let the
    /// database's new owner serve it.
    LostLease { name: String },
    /// PostgreSQL or the object storage failed, or the stored state is
    /// damaged. The local copy may hold writes that are not durable: fail
    /// the request, drop the handle and restore again before serving.
    Failed(anyhow::Error),
}

impl std::fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LostLease { name } => write!(
                f,
                "the lease on the database {name:?} is no longer this node's; nothing was saved\n\
                 hint: another node owns it now: drop this copy and send the request to the owner"
            ),
            Self::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for ReplicaError {}

impl From<anyhow::Error> for ReplicaError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

impl From<rusqlite::Error> for ReplicaError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Failed(e.into())
    }
}

impl From<std::io::Error> for ReplicaError {
    fn from(e: std::io::Error) -> Self {
        Self::Failed(e.into())
    }
}

/// Why a handle refuses work.
#[derive(Debug, Clone, Copy)]
enum Poison {
    LostLease,
    Failed,
    /// A closure panicked, or shipping was interrupted: what is local may
    /// not be durable.
    Interrupted,
}

/// A local SQLite database whose commits are in PostgreSQL before [`with`]
/// returns. See the module docs.
///
/// [`with`]: ReplicatedDb::with
pub struct ReplicatedDb {
    name: String,
    path: PathBuf,
    wal_path: PathBuf,
    conn: Connection,
    fence: Fence,
    db: Db,
    objects: Objects,
    runtime: Handle,
    generation: i64,
    /// The current generation's snapshot object, if any.
    snapshot: Option<String>,
    /// The `seq` the next shipped piece gets.
    next_seq: i64,
    /// Bytes of the `-wal` file in PostgreSQL; always the end of a commit
    /// frame, or 0.
    shipped: u64,
    /// The header of the WAL being shipped and the checksum at `shipped`;
    /// None while nothing of this generation is shipped.
    position: Option<WalPosition>,
    poisoned: Option<Poison>,
}

impl ReplicatedDb {
    /// Rebuild the database `name` at `path` from PostgreSQL and the object
    /// storage, and open it. Call it right after acquiring the lease that
    /// `fence` proves; local files at `path` (and its `-wal`, `-shm`,
    /// `-journal`) are deleted first, whatever they hold. A name never
    /// written gives an empty database. Must run inside a Tokio runtime,
    /// whose handle [`ReplicatedDb::with`] uses later.
    pub async fn restore(
        db: &Db,
        objects: &Objects,
        name: &str,
        path: &Path,
        fence: Fence,
    ) -> Result<ReplicatedDb, ReplicaError> {
        let stored = read_stored(db, name, &fence).await?;
        let snapshot = match &stored.snapshot {
            Some(key) => Some(objects.get(key).await?.ok_or_else(|| {
                anyhow!(
                    "the snapshot {key:?} of the database {name:?} (generation {}) is missing \
                     from the object storage\nhint: the object storage lost it or someone deleted \
                     it; restore it from a backup of the bucket",
                    stored.generation
                )
            })?),
            None => None,
        };
        let (at, name_owned) = (path.to_path_buf(), name.to_string());
        let wal = stored.wal;
        let (conn, shipped, position) = tokio::task::spawn_blocking(move || {
            rebuild(&name_owned, &at, snapshot.as_deref(), &wal)
        })
        .await
        .map_err(|e| anyhow!("the task rebuilding the database {name:?} failed: {e}"))??;
        let next_seq = stored.pieces;
        Ok(ReplicatedDb {
            name: name.to_string(),
            wal_path: suffixed(path, "-wal"),
            path: path.to_path_buf(),
            conn,
            fence,
            db: db.clone(),
            objects: objects.clone(),
            runtime: Handle::current(),
            generation: stored.generation,
            snapshot: stored.snapshot,
            next_seq,
            shipped,
            position,
            poisoned: None,
        })
    }

    /// Run `f` on the connection, then ship what it committed; `Ok` means
    /// every commit of `f` is durable (acknowledge only then). `f`'s own
    /// result, SQL errors included, is returned as is: commits made before
    /// an error in `f` are shipped too.
    ///
    /// Call it from a blocking thread (`tokio::task::spawn_blocking`), not
    /// from async code: it waits for PostgreSQL (and, when a checkpoint is
    /// due, the object storage) with `Handle::block_on`.
    ///
    /// `f` must end with no transaction open (else `Failed`), must not
    /// replace the connection's authorizer (it keeps SQL from checkpointing
    /// or leaving WAL mode, which would hide writes from shipping), and must
    /// not checkpoint through the C API. Per-connection settings
    /// (`foreign_keys`, `busy_timeout`, functions) are the caller's to set,
    /// again after each restore.
    pub fn with<T>(&mut self, f: impl FnOnce(&mut Connection) -> T) -> Result<T, ReplicaError> {
        self.check_usable()?;
        self.poisoned = Some(Poison::Interrupted);
        let value = f(&mut self.conn);
        let shipped = if self.conn.is_autocommit() {
            self.sync(false)
        } else {
            Err(ReplicaError::Failed(anyhow!(
                "the work on the database {:?} left a transaction open, so its writes are not \
                 saved\nhint: commit or roll back inside the closure",
                self.name
            )))
        };
        self.settle(shipped)?;
        Ok(value)
    }

    /// Ship what is committed and checkpoint into a new generation now,
    /// e.g. before handing the database over, so that the next owner
    /// restores from a snapshot alone. Blocking, like [`ReplicatedDb::with`].
    pub fn checkpoint(&mut self) -> Result<(), ReplicaError> {
        self.check_usable()?;
        self.poisoned = Some(Poison::Interrupted);
        let result = self.sync(true);
        self.settle(result)
    }

    /// Close the connection and delete the local files (best effort). They
    /// are not to be trusted anyway once closed.
    pub fn close(self) {
        let ReplicatedDb { conn, path, .. } = self;
        drop(conn);
        remove_local(&path).ok();
    }

    /// Whether an earlier failure made this handle refuse work (restore again).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The current generation: it grows by one with every checkpoint.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    fn check_usable(&self) -> Result<(), ReplicaError> {
        match self.poisoned {
            None => Ok(()),
            Some(Poison::LostLease) => Err(ReplicaError::LostLease {
                name: self.name.clone(),
            }),
            Some(Poison::Failed | Poison::Interrupted) => Err(ReplicaError::Failed(anyhow!(
                "an earlier failure left the local copy of the database {:?} out of step with \
                 what is saved\nhint: drop this handle and restore the database again",
                self.name
            ))),
        }
    }

    /// Record how a shipment ended: any failure poisons the handle.
    fn settle(&mut self, result: Result<(), ReplicaError>) -> Result<(), ReplicaError> {
        match result {
            Ok(()) => {
                self.poisoned = None;
                Ok(())
            }
            Err(e @ ReplicaError::LostLease { .. }) => {
                self.poisoned = Some(Poison::LostLease);
                Err(e)
            }
            Err(ReplicaError::Failed(e)) => {
                self.poisoned = Some(Poison::Failed);
                let e = if format!("{e:#}").contains("\nhint: ") {
                    e
                } else {
                    anyhow!(
                        "{e:#}\nhint: this call's writes are not saved: fail the request, drop \
                         this copy of the database and restore it before serving it again"
                    )
                };
                Err(ReplicaError::Failed(e))
            }
        }
    }

    /// Ship the committed frames not shipped yet, then checkpoint if `force`
    /// or the WAL is long (or was reset behind our back).
    fn sync(&mut self, force: bool) -> Result<(), ReplicaError> {
        let (pending, wal_len) = self.pending().with_context(|| {
            format!(
                "reading the WAL of the database {:?} at {}",
                self.name,
                self.wal_path.display()
            )
        })?;
        match pending {
            Pending::Nothing => {}
            Pending::Frames {
                bytes,
                end,
                position,
            } => self.ship(bytes, end, position)?,
            Pending::Reset => {
                tracing::warn!(
                    "the WAL of the database {:?} was reset outside the replication; \
                     saving a full snapshot",
                    self.name
                );
                return self.snapshot();
            }
        }
        if force {
            self.snapshot()?;
        } else if wal_len > CHECKPOINT_BYTES
            && let Err(e) = self.snapshot()
        {
            // The write is durable already (its frames are shipped): the
            // caller must hear so, or a retry would apply it twice. A
            // failed checkpoint leaves a complete earlier state; the next
            // write checkpoints again, or the next restore reads the frames.
            tracing::warn!("checkpointing the database {:?} failed: {e}", self.name);
        }
        Ok(())
    }

    /// What the `-wal` file holds past the shipped offset, and its length.
    fn pending(&self) -> anyhow::Result<(Pending, u64)> {
        let len = match std::fs::metadata(&self.wal_path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        if len < self.shipped {
            return Ok((Pending::Reset, len));
        }
        if len == self.shipped {
            return Ok((Pending::Nothing, len));
        }
        let mut file = File::open(&self.wal_path)?;
        let pending = match self.position {
            None => {
                let mut bytes = Vec::with_capacity(len as usize);
                file.read_to_end(&mut bytes)?;
                // No valid header yet: no commit either.
                match WalHeader::parse(&bytes) {
                    None => Pending::Nothing,
                    Some(header) => {
                        let (n, checksum) =
                            committed_prefix(&header, header.checksum, &bytes[WAL_HEADER..]);
                        bytes.truncate(WAL_HEADER + n);
                        Pending::frames(bytes, 0, WalPosition { header, checksum })
                    }
                }
            }
            Some(position) => {
                let mut head = [0u8; WAL_HEADER];
                file.read_exact(&mut head)?;
                if WalHeader::parse(&head) != Some(position.header) {
                    Pending::Reset
                } else {
                    file.seek(SeekFrom::Start(self.shipped))?;
                    let mut bytes = Vec::with_capacity((len - self.shipped) as usize);
                    file.read_to_end(&mut bytes)?;
                    let (n, checksum) =
                        committed_prefix(&position.header, position.checksum, &bytes);
                    bytes.truncate(n);
                    Pending::frames(
                        bytes,
                        self.shipped,
                        WalPosition {
                            header: position.header,
                            checksum,
                        },
                    )
                }
            }
        };
        Ok((pending, len))
    }

    /// Insert `bytes` (the WAL from `shipped` to `end`) as the next pieces.
    fn ship(
        &mut self,
        bytes: Vec<u8>,
        end: u64,
        position: WalPosition,
    ) -> Result<(), ReplicaError> {
        let pieces: Vec<&[u8]> = bytes.chunks(PIECE_BYTES).collect();
        let count = pieces.len() as u64;
        let (name, generation, seq, fence) =
            (&self.name, self.generation, self.next_seq, &self.fence);
        let inserted = self
            .runtime
            .block_on(async {
                let client = self.db.client().await?;
                let statement = client.prepare_cached(SHIP_SQL).await?;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
                    name,
                    &generation,
                    &seq,
                    &pieces,
                    &fence.lease,
                    &fence.owner,
                    &fence.token,
                ];
                anyhow::Ok(client.execute(&statement, &params).await?)
            })
            .with_context(|| {
                format!(
                    "saving {} bytes of WAL of the database {name:?} (generation {generation}, \
                     piece {seq}) to PostgreSQL",
                    bytes.len()
                )
            })?;
        if inserted == 0 {
            return Err(ReplicaError::LostLease { name: name.clone() });
        }
        if inserted != count {
            return Err(anyhow!(
                "saving the WAL of the database {name:?} inserted {inserted} pieces, not {count}"
            )
            .into());
        }
        self.next_seq += count as i64;
        self.shipped = end;
        self.position = Some(position);
        Ok(())
    }

    /// Steps 2 to 5 of a checkpoint (module docs); everything committed is
    /// shipped already, or the WAL was reset and the snapshot is what saves
    /// it.
    fn snapshot(&mut self) -> Result<(), ReplicaError> {
        let name = self.name.clone();
        let generation = self.generation + 1;
        // Our own pragmas, past the authorizer that refuses them to callers.
        self.conn
            .authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        let checkpointed = checkpoint_locally(&self.conn);
        guard(&self.conn);
        checkpointed.with_context(|| format!("checkpointing the database {name:?}"))?;
        let main = std::fs::read(&self.path)
            .with_context(|| format!("reading \"{}\"", self.path.display()))?;
        let compressed = zstd::encode_all(&main[..], ZSTD_LEVEL)
            .with_context(|| format!("compressing the snapshot of the database {name:?}"))?;
        let key = snapshot_key(&name, generation);
        let (db, objects, fence) = (&self.db, &self.objects, &self.fence);
        self.runtime
            .block_on(objects.put(&key, compressed))
            .with_context(|| format!("uploading the snapshot of the database {name:?}"))?;
        let committed = self.runtime.block_on(commit_generation(
            db,
            &name,
            fence,
            self.generation,
            generation,
            &key,
        ));
        if let Err(e) = committed {
            if matches!(e, ReplicaError::LostLease { .. }) {
                // Nothing names it (the transaction surely rolled back).
                self.runtime.block_on(objects.delete(&key)).ok();
            }
            return Err(e);
        }
        let old = self.snapshot.replace(key);
        self.generation = generation;
        self.next_seq = 0;
        self.shipped = 0;
        self.position = None;
        if let Some(old) = old
            && let Err(e) = self.runtime.block_on(self.objects.delete(&old))
        {
            tracing::warn!("deleting the old snapshot {old:?} of the database {name:?}: {e:#}");
        }
        Ok(())
    }
}

/// `INSERT` the pieces `$4` as seq `$3`, `$3 + 1`…, fenced by the lease
/// (`$5`, `$6`, `$7`); affects no row when the lease is not ours.
const SHIP_SQL: &str = "
    INSERT INTO sqlite_wal (name, generation, seq, bytes)
    SELECT $1, $2, $3 + piece.i - 1, piece.bytes
    FROM unnest($4::bytea[]) WITH ORDINALITY AS piece(bytes, i)
    WHERE EXISTS (
        SELECT 1 FROM leases
        WHERE name = $5 AND owner = $6 AND token = $7 AND expires > now()
        FOR SHARE
    )";

/// Holds the lease row until the transaction ends; no row: not ours.
const LOCK_LEASE_SQL: &str = "
    SELECT 1 FROM leases
    WHERE name = $1 AND owner = $2 AND token = $3 AND expires > now()
    FOR SHARE";

/// Step 4 of a checkpoint, in one fenced transaction.
async fn commit_generation(
    db: &Db,
    name: &str,
    fence: &Fence,
    old: i64,
    new: i64,
    snapshot: &str,
) -> Result<(), ReplicaError> {
    let context = || format!("saving generation {new} of the database {name:?} to PostgreSQL");
    let mut client = db.client().await.with_context(context)?;
    let tx = client.transaction().await.with_context(context)?;
    let ours = tx
        .query_opt(LOCK_LEASE_SQL, &[&fence.lease, &fence.owner, &fence.token])
        .await
        .with_context(context)?;
    if ours.is_none() {
        return Err(ReplicaError::LostLease {
            name: name.to_string(),
        });
    }
    let updated = tx
        .execute(
            "INSERT INTO sqlite_replicas (name, generation, snapshot) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
             SET generation = EXCLUDED.generation, snapshot = EXCLUDED.snapshot
             WHERE sqlite_replicas.generation = $4",
            &[&name, &new, &snapshot, &old],
        )
        .await
        .with_context(context)?;
    if updated != 1 {
        // Only a second handle on the same lease can get here.
        return Err(anyhow!(
            "the database {name:?} is no longer at generation {old} in PostgreSQL\n\
             hint: two handles wrote it under one lease; keep one per database and process"
        )
        .into());
    }
    tx.execute(
        "DELETE FROM sqlite_wal WHERE name = $1 AND generation < $2",
        &[&name, &new],
    )
    .await
    .with_context(context)?;
    tx.commit().await.with_context(context)?;
    Ok(())
}

/// What PostgreSQL holds of a database.
struct Stored {
    generation: i64,
    snapshot: Option<String>,
    /// The generation's WAL, its pieces concatenated.
    wal: Vec<u8>,
    pieces: i64,
}

async fn read_stored(db: &Db, name: &str, fence: &Fence) -> Result<Stored, ReplicaError> {
    let context = || format!("reading the database {name:?} from PostgreSQL");
    let mut client = db.client().await.with_context(context)?;
    // One consistent view of the row and the pieces.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .with_context(context)?;
    let ours = tx
        .query_opt(
            "SELECT 1 FROM leases
             WHERE name = $1 AND owner = $2 AND token = $3 AND expires > now()",
            &[&fence.lease, &fence.owner, &fence.token],
        )
        .await
        .with_context(context)?;
    if ours.is_none() {
        return Err(ReplicaError::LostLease {
            name: name.to_string(),
        });
    }
    let row = tx
        .query_opt(
            "SELECT generation, snapshot FROM sqlite_replicas WHERE name = $1",
            &[&name],
        )
        .await
        .with_context(context)?;
    let (generation, snapshot): (i64, Option<String>) =
        row.map_or((0, None), |row| (row.get(0), row.get(1)));
    let rows = tx
        .query(
            "SELECT seq, bytes FROM sqlite_wal WHERE name = $1 AND generation = $2 ORDER BY seq",
            &[&name, &generation],
        )
        .await
        .with_context(context)?;
    tx.commit().await.with_context(context)?;
    let mut wal = Vec::new();
    for (expected, row) in (0i64..).zip(&rows) {
        let seq: i64 = row.get(0);
        if seq != expected {
            return Err(anyhow!(
                "the saved WAL of the database {name:?} (generation {generation}) lacks piece \
                 {expected}\nhint: the database's rows in sqlite_wal were edited by hand"
            )
            .into());
        }
        wal.extend_from_slice(row.get::<_, &[u8]>(1));
    }
    Ok(Stored {
        generation,
        snapshot,
        wal,
        pieces: rows.len() as i64,
    })
}

/// Put the snapshot (compressed) and the WAL on disk at `path`, open the
/// database, and return it with the shipped offset and position.
fn rebuild(
    name: &str,
    path: &Path,
    snapshot: Option<&[u8]>,
    wal: &[u8],
) -> Result<(Connection, u64, Option<WalPosition>), ReplicaError> {
    let context = || format!("rebuilding the database {name:?} at \"{}\"", path.display());
    remove_local(path).with_context(context)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(context)?;
    }
    match snapshot {
        Some(compressed) => {
            let main = zstd::decode_all(compressed)
                .with_context(|| format!("decompressing the snapshot of the database {name:?}"))?;
            std::fs::write(path, main).with_context(context)?;
        }
        None => {
            // A new WAL-mode database: page 1 gets written to the main file.
            // SQLite deletes the WAL of an empty main file, so it must exist
            // before the WAL does.
            let conn = Connection::open(path).with_context(context)?;
            set_wal_mode(&conn).with_context(context)?;
        }
    }
    let position = match wal {
        [] => None,
        _ => {
            let damaged = |detail: String| {
                anyhow!(
                    "the saved WAL of the database {name:?} is damaged: {detail}\nhint: its rows \
                     in sqlite_wal were edited by hand, or written by another program"
                )
            };
            let header =
                WalHeader::parse(wal).ok_or_else(|| damaged("its header is not valid".into()))?;
            let (n, checksum) = committed_prefix(&header, header.checksum, &wal[WAL_HEADER..]);
            if WAL_HEADER + n != wal.len() {
                return Err(damaged(format!(
                    "its frames are valid and committed up to byte {} of {}",
                    WAL_HEADER + n,
                    wal.len()
                ))
                .into());
            }
            std::fs::write(suffixed(path, "-wal"), wal).with_context(context)?;
            Some(WalPosition { header, checksum })
        }
    };
    let conn = Connection::open(path).with_context(context)?;
    set_wal_mode(&conn).with_context(context)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .with_context(context)?;
    // The local files are rebuilt after any crash, never trusted: no fsync.
    conn.pragma_update(None, "synchronous", "OFF")
        .with_context(context)?;
    // Reading the schema makes SQLite recover the WAL now, not on first use.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .with_context(context)?;
    guard(&conn);
    Ok((conn, wal.len() as u64, position))
}

fn set_wal_mode(conn: &Connection) -> anyhow::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "SQLite would not use WAL mode (it answered {mode:?})"
    );
    Ok(())
}

/// Back to WAL mode if someone left it, and a `TRUNCATE` checkpoint.
fn checkpoint_locally(conn: &Connection) -> anyhow::Result<()> {
    set_wal_mode(conn)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    anyhow::ensure!(
        busy == 0,
        "SQLite could not finish the checkpoint (another connection uses the file?)"
    );
    Ok(())
}

/// Refuse the SQL that would move commits out of the WAL's reach, or keep
/// them elsewhere: checkpoints, leaving WAL mode, automatic checkpoints,
/// attached files. Reading those pragmas stays allowed.
fn guard(conn: &Connection) {
    conn.authorizer(Some(|context: AuthContext<'_>| match context.action {
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let sets = pragma_value.is_some();
            if name == "wal_checkpoint"
                || (sets && (name == "journal_mode" || name == "wal_autocheckpoint"))
            {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        AuthAction::Attach { .. } => Authorization::Deny,
        _ => Authorization::Allow,
    }));
}

/// Delete `path` and the files SQLite keeps next to it.
fn remove_local(path: &Path) -> std::io::Result<()> {
    for file in [
        path.to_path_buf(),
        suffixed(path, "-wal"),
        suffixed(path, "-shm"),
        suffixed(path, "-journal"),
    ] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// `sqlite/<readable part>-<hash>/<generation>-<unique>.db.zst`: any name
/// becomes one safe path segment (the hash keeps names apart that read the
/// same), and no key is ever written twice.
fn snapshot_key(name: &str, generation: i64) -> String {
    let readable: String = name
        .chars()
        .take(48)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = sha2::Sha256::digest(name.as_bytes());
    let hash: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "sqlite/{readable}-{hash}/{generation:012}-{}.db.zst",
        uuid::Uuid::new_v4().simple()
    )
}

// The WAL file format (https://sqlite.org/fileformat2.html#walformat).

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_VERSION: u32 = 3_007_000;

/// A valid WAL header's fields that frames depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WalHeader {
    page_size: usize,
    /// Checksums read the content as big-endian words (magic's low bit).
    big_endian: bool,
    salt: [u8; 8],
    /// The header's own checksum: where the frames' running checksum starts.
    checksum: [u32; 2],
}

impl WalHeader {
    /// The header at the start of `bytes`, if there is a valid one.
    fn parse(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..WAL_HEADER)?;
        let magic = be32(b, 0);
        if magic & !1 != WAL_MAGIC || be32(b, 4) != WAL_VERSION {
            return None;
        }
        let page_size = match be32(b, 8) {
            1 => 65536,
            n => n as usize,
        };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let big_endian = magic & 1 == 1;
        let checksum = checksum(big_endian, &b[..24], [0, 0]);
        if checksum != [be32(b, 24), be32(b, 28)] {
            return None;
        }
        Some(Self {
            page_size,
            big_endian,
            salt: b[16..24].try_into().ok()?,
            checksum,
        })
    }

    fn frame_size(&self) -> usize {
        FRAME_HEADER + self.page_size
    }
}

/// Where shipping stands in a WAL: its header, and the running checksum at
/// the shipped offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WalPosition {
    header: WalHeader,
    checksum: [u32; 2],
}

enum Pending {
    Nothing,
    /// New WAL bytes, ending with a commit frame, and where they end.
    Frames {
        bytes: Vec<u8>,
        end: u64,
        position: WalPosition,
    },
    /// The file is not the continuation of what was shipped.
    Reset,
}

impl Pending {
    fn frames(bytes: Vec<u8>, start: u64, position: WalPosition) -> Self {
        let has_frames = bytes.len() > if start == 0 { WAL_HEADER } else { 0 };
        if !has_frames {
            return Pending::Nothing;
        }
        Pending::Frames {
            end: start + bytes.len() as u64,
            bytes,
            position,
        }
    }
}

/// The length of the longest prefix of `frames` that SQLite's recovery
/// would keep (valid frames, ending with a commit frame), with the running
/// checksum at its end; `running` is the checksum before the first frame.
fn committed_prefix(header: &WalHeader, mut running: [u32; 2], frames: &[u8]) -> (usize, [u32; 2]) {
    let mut committed = (0, running);
    for (i, frame) in frames.chunks_exact(header.frame_size()).enumerate() {
        if be32(frame, 0) == 0 || frame[8..16] != header.salt {
            break;
        }
        running = checksum(header.big_endian, &frame[..8], running);
        running = checksum(header.big_endian, &frame[FRAME_HEADER..], running);
        if running != [be32(frame, 16), be32(frame, 20)] {
            break;
        }
        if be32(frame, 4) != 0 {
            committed = ((i + 1) * header.frame_size(), running);
        }
    }
    committed
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), from `start`.
fn checksum(big_endian: bool, data: &[u8], start: [u32; 2]) -> [u32; 2] {
    let [mut s1, mut s2] = start;
    for pair in data.chunks_exact(8) {
        let (a, b) = if big_endian {
            (be32(pair, 0), be32(pair, 4))
        } else {
            (le32(pair, 0), le32(pair, 4))
        };
        s1 = s1.wrapping_add(a).wrapping_add(s2);
        s2 = s2.wrapping_add(b).wrapping_add(s1);
    }
    [s1, s2]
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::testing::TestDatabase;

    struct Setup {
        _database: TestDatabase,
        db: Db,
        objects: Objects,
        dir: tempfile::TempDir,
    }

    async fn setup() -> Setup {
        let database = TestDatabase::create().await;
        let db = database.connect().await;
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path().join("objects")).unwrap();
        let objects = Objects::open(url.as_str()).unwrap();
        Setup {
            _database: database,
            db,
            objects,
            dir,
        }
    }

    impl Setup {
        /// Give the lease `name` to "node-a" with `token`, for an hour.
        async fn lease(&self, name: &str, token: i64) -> Fence {
            self.sql(
                "INSERT INTO leases (name, owner, token, expires)
                 VALUES ($1, 'node-a', $2, now() + interval '1 hour')
                 ON CONFLICT (name) DO UPDATE SET owner = 'node-a', token = $2,
                 expires = now() + interval '1 hour'",
                name,
                token,
            )
            .await;
            Fence {
                lease: name.to_string(),
                owner: "node-a".to_string(),
                token,
            }
        }

        async fn sql(&self, sql: &str, name: &str, value: i64) -> u64 {
            let client = self.db.client().await.unwrap();
            client.execute(sql, &[&name, &value]).await.unwrap()
        }

        /// `sqlite_wal` rows of `name`.
        async fn pieces(&self, name: &str) -> i64 {
            let client = self.db.client().await.unwrap();
            client
                .query_one("SELECT count(*) FROM sqlite_wal WHERE name = $1", &[&name])
                .await
                .unwrap()
                .get(0)
        }

        fn path(&self, node: &str) -> PathBuf {
            self.dir.path().join(node).join("db.sqlite")
        }

        async fn restore(&self, name: &str, node: &str, fence: &Fence) -> ReplicatedDb {
            ReplicatedDb::restore(
                &self.db,
                &self.objects,
                name,
                &self.path(node),
                fence.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("restoring {name:?}: {e}"))
        }

        /// Snapshot objects in the store.
        fn snapshots(&self) -> Vec<PathBuf> {
            let mut found = Vec::new();
            let mut stack = vec![self.dir.path().join("objects")];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if entry.file_type().unwrap().is_dir() {
                        stack.push(entry.path());
                    } else if entry.path().to_string_lossy().ends_with(".db.zst") {
                        found.push(entry.path());
                    }
                }
            }
            found
        }
    }

    /// `ReplicatedDb::with`, from a blocking thread as callers do.
    async fn with<T: Send + 'static>(
        mut replica: ReplicatedDb,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> (ReplicatedDb, Result<T, ReplicaError>) {
        tokio::task::spawn_blocking(move || {
            let out = replica.with(f);
            (replica, out)
        })
        .await
        .unwrap()
    }

    async fn checkpoint(mut replica: ReplicatedDb) -> (ReplicatedDb, Result<(), ReplicaError>) {
        tokio::task::spawn_blocking(move || {
            let out = replica.checkpoint();
            (replica, out)
        })
        .await
        .unwrap()
    }

    /// SIGKILL, as far as the files go: no close, no checkpoint.
    fn crash(replica: ReplicatedDb) {
        std::mem::forget(replica);
    }

    fn rows(conn: &mut Connection, sql: &str) -> Vec<(i64, String)> {
        let mut statement = conn.prepare(sql).unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn expected(range: std::ops::Range<i64>) -> Vec<(i64, String)> {
        range.map(|i| (i, format!("value {i}"))).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_writes_survive_a_crash() {
        let s = setup().await;
        let fence = s.lease("d1:app:db", 1).await;
        let r = s.restore("d1:app:db", "a", &fence).await;
        let (r, out) = with(r, |conn| {
            conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .unwrap();
            for i in 0..50 {
                conn.execute("INSERT INTO t VALUES (?1, ?2)", (i, format!("value {i}")))
                    .unwrap();
            }
        })
        .await;
        out.unwrap();
        let (r, out) = with(r, |conn| {
            let tx = conn.transaction().unwrap();
            for i in 50..100 {
                tx.execute("INSERT INTO t VALUES (?1, ?2)", (i, format!("value {i}")))
                    .unwrap();
            }
            tx.commit().unwrap();
        })
        .await;
        out.unwrap();
        let shipped = s.pieces("d1:app:db").await;
        assert!(shipped >= 2, "{shipped}");
        // A read ships nothing.
        let (r, out) = with(r, |conn| rows(conn, "SELECT id, v FROM t ORDER BY id")).await;
        assert_eq!(out.unwrap(), expected(0..100));
        assert_eq!(s.pieces("d1:app:db").await, shipped);
        assert_eq!(r.generation(), 0);
        crash(r);

        // Elsewhere: everything is back, and new writes append to the
        // restored WAL.
        let r = s.restore("d1:app:db", "b", &fence).await;
        let (r, out) = with(r, |conn| {
            let before = rows(conn, "SELECT id, v FROM t ORDER BY id");
            conn.execute("INSERT INTO t VALUES (100, 'value 100')", [])
                .unwrap();
            before
        })
        .await;
        assert_eq!(out.unwrap(), expected(0..100));
        assert_eq!(r.generation(), 0, "appended to the restored WAL, no reset");
        crash(r);
        let r = s.restore("d1:app:db", "c", &fence).await;
        let (_r, out) = with(r, |conn| rows(conn, "SELECT id, v FROM t ORDER BY id")).await;
        assert_eq!(out.unwrap(), expected(0..101));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_start_new_generations() {
        let s = setup().await;
        let name = "do:app:Counter:0123abcd";
        let fence = s.lease(name, 7).await;
        let r = s.restore(name, "a", &fence).await;
        let (mut r, out) = with(r, |conn| {
            conn.execute_batch("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)")
                .unwrap();
        })
        .await;
        out.unwrap();
        // About 10 MiB of WAL, one commit at a time: two checkpoints at least.
        for i in 0..40u8 {
            let out;
            (r, out) = with(r, move |conn| {
                conn.execute(
                    "INSERT INTO blobs VALUES (?1, ?2)",
                    (i, vec![i; 256 * 1024]),
                )
                .unwrap();
            })
            .await;
            out.unwrap();
        }
        let generation = r.generation();
        assert!(generation >= 2, "generation {generation}");
        let client = s.db.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT generation, snapshot FROM sqlite_replicas WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), generation);
        let key: String = row.get(1);
        assert!(key.starts_with("sqlite/do_app_Counter_0123abcd-"), "{key}");
        let old: i64 = client
            .query_one(
                "SELECT count(*) FROM sqlite_wal WHERE name = $1 AND generation <> $2",
                &[&name, &generation],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(old, 0, "older generations' WAL is deleted");
        assert_eq!(s.snapshots().len(), 1, "older snapshots are deleted");
        crash(r);

        let check = |conn: &mut Connection| {
            let mut statement = conn.prepare("SELECT id, b FROM blobs ORDER BY id").unwrap();
            let blobs: Vec<(u8, Vec<u8>)> = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(blobs.len(), 40);
            for (i, b) in blobs {
                assert_eq!(b, vec![i; 256 * 1024], "blob {i}");
            }
        };
        let r = s.restore(name, "b", &fence).await;
        assert_eq!(r.generation(), generation);
        let (r, out) = with(r, check).await;
        out.unwrap();

        // A checkpoint on demand: the next restore needs the snapshot only.
        let (r, out) = checkpoint(r).await;
        out.unwrap();
        assert_eq!(r.generation(), generation + 1);
        assert_eq!(s.pieces(name).await, 0);
        assert_eq!(s.snapshots().len(), 1);
        crash(r);
        let r = s.restore(name, "c", &fence).await;
        let (_r, out) = with(r, check).await;
        out.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rolled_back_transaction_is_never_shipped() {
        let s = setup().await;
        let fence = s.lease("d1:rollback", 1).await;
        let r = s.restore("d1:rollback", "a", &fence).await;
        let (r, out) = with(r, |conn| {
            conn.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, pad BLOB);
                 INSERT INTO t (id, v) VALUES (0, 'value 0');",
            )
            .unwrap();
        })
        .await;
        out.unwrap();
        let mut r = r;
        for round in 1..=2i64 {
            // A transaction bigger than the page cache spills frames into
            // the WAL, then rolls back: they stay in the file.
            let out;
            (r, out) = with(r, |conn| {
                conn.execute_batch("PRAGMA cache_size = 10").unwrap();
                let tx = conn.transaction().unwrap();
                for i in 1000..1200 {
                    tx.execute(
                        "INSERT INTO t VALUES (?1, 'rolled back', ?2)",
                        (i, vec![1u8; 8 * 1024]),
                    )
                    .unwrap();
                }
                tx.rollback().unwrap();
            })
            .await;
            out.unwrap();
            let wal_len = std::fs::metadata(&r.wal_path).unwrap().len();
            assert!(
                wal_len > r.shipped + 1_000_000,
                "the rolled-back frames are in the WAL: {wal_len} bytes, {} shipped",
                r.shipped
            );
            // A small commit overwrites the first of them in place.
            let out;
            (r, out) = with(r, move |conn| {
                conn.execute(
                    "INSERT INTO t (id, v) VALUES (?1, ?2)",
                    (round, format!("value {round}")),
                )
                .unwrap();
            })
            .await;
            out.unwrap();
            assert!(std::fs::metadata(&r.wal_path).unwrap().len() > r.shipped);
        }
        crash(r);
        let r = s.restore("d1:rollback", "b", &fence).await;
        let (r, out) = with(r, |conn| {
            let before = rows(conn, "SELECT id, v FROM t ORDER BY id");
            conn.execute("INSERT INTO t (id, v) VALUES (3, 'value 3')", [])
                .unwrap();
            before
        })
        .await;
        assert_eq!(out.unwrap(), expected(0..3));
        crash(r);
        let r = s.restore("d1:rollback", "c", &fence).await;
        let (_r, out) = with(r, |conn| rows(conn, "SELECT id, v FROM t ORDER BY id")).await;
        assert_eq!(out.unwrap(), expected(0..4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_lease_fails_the_write_and_ships_nothing() {
        let s = setup().await;
        let name = "d1:lease";
        let fence = s.lease(name, 1).await;
        let r = s.restore(name, "a", &fence).await;
        let (r, out) = with(r, |conn| {
            conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .unwrap();
        })
        .await;
        out.unwrap();
        let shipped = s.pieces(name).await;

        // Another node takes the lease over.
        s.sql("UPDATE leases SET token = $2 WHERE name = $1", name, 2)
            .await;
        let (r, out) = with(r, |conn| {
            conn.execute("INSERT INTO t VALUES (1, 'value 1')", [])
                .unwrap();
        })
        .await;
        let e = out.unwrap_err();
        assert!(matches!(e, ReplicaError::LostLease { .. }), "{e}");
        assert!(e.to_string().contains("no longer this node's"), "{e}");
        assert_eq!(s.pieces(name).await, shipped);
        // The handle refuses more work without running it.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let (_r, out) = with(r, move |_| flag.store(true, Ordering::SeqCst)).await;
        assert!(matches!(out, Err(ReplicaError::LostLease { .. })));
        assert!(!ran.load(Ordering::SeqCst));
        // Nor can the old owner restore.
        let e = ReplicatedDb::restore(&s.db, &s.objects, name, &s.path("b"), fence.clone())
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ReplicaError::LostLease { .. }), "{e}");

        // The checkpoint's transaction is fenced too, and leaves no object.
        let fence = s.lease(name, 3).await;
        let r = s.restore(name, "c", &fence).await;
        s.sql("UPDATE leases SET token = $2 WHERE name = $1", name, 4)
            .await;
        let (_r, out) = checkpoint(r).await;
        assert!(matches!(out, Err(ReplicaError::LostLease { .. })));
        assert!(s.snapshots().is_empty());
        let generations: i64 =
            s.db.client()
                .await
                .unwrap()
                .query_one("SELECT count(*) FROM sqlite_replicas", &[])
                .await
                .unwrap()
                .get(0);
        assert_eq!(generations, 0);

        // An expired lease is lost as well.
        let fence = s.lease(name, 5).await;
        let r = s.restore(name, "d", &fence).await;
        s.sql(
            "UPDATE leases SET expires = now() - interval '1 second' WHERE name = $1 AND token = $2",
            name,
            5,
        )
        .await;
        let (_r, out) = with(r, |conn| {
            conn.execute("INSERT INTO t VALUES (2, 'value 2')", [])
                .unwrap();
        })
        .await;
        assert!(matches!(out, Err(ReplicaError::LostLease { .. })));
        assert_eq!(s.pieces(name).await, shipped);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_changes_survive() {
        let s = setup().await;
        let name = "d1:schema";
        let fence = s.lease(name, 1).await;
        let r = s.restore(name, "a", &fence).await;
        let schema = |conn: &mut Connection| {
            rows(
                conn,
                "SELECT rowid, type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_schema ORDER BY name",
            )
        };
        let (r, out) = with(r, |conn| {
            conn.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
                 CREATE INDEX t_v ON t (v);
                 CREATE TABLE log (v TEXT);
                 CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.v); END;
                 CREATE VIEW t_view AS SELECT v FROM t;
                 INSERT INTO t VALUES (1, 'one');",
            )
            .unwrap();
        })
        .await;
        out.unwrap();
        let (r, out) = checkpoint(r).await;
        out.unwrap();
        let (r, out) = with(r, move |conn| {
            conn.execute_batch(
                "ALTER TABLE t ADD COLUMN extra INTEGER DEFAULT 5;
                 DROP INDEX t_v;
                 CREATE UNIQUE INDEX t_v_unique ON t (v);
                 INSERT INTO t (id, v) VALUES (2, 'two');",
            )
            .unwrap();
            schema(conn)
        })
        .await;
        let before = out.unwrap();
        assert!(
            before
                .iter()
                .any(|(_, s)| s.starts_with("index t_v_unique"))
        );
        crash(r);
        let r = s.restore(name, "b", &fence).await;
        let (_r, out) = with(r, move |conn| {
            let after = schema(conn);
            let logged = rows(conn, "SELECT rowid, v FROM log ORDER BY rowid");
            let extra: i64 = conn
                .query_row("SELECT extra FROM t WHERE id = 1", [], |row| row.get(0))
                .unwrap();
            let duplicate = conn.execute("INSERT INTO t (id, v) VALUES (3, 'two')", []);
            (after, logged, extra, duplicate.is_err())
        })
        .await;
        let (after, logged, extra, refused) = out.unwrap();
        assert_eq!(after, before);
        assert_eq!(logged, vec![(1, "one".into()), (2, "two".into())]);
        assert_eq!(extra, 5);
        assert!(refused, "the unique index is back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_name_never_written_restores_empty() {
        let s = setup().await;
        let fence = s.lease("do:new", 1).await;
        let r = s.restore("do:new", "a", &fence).await;
        assert_eq!(r.generation(), 0);
        let count = |conn: &mut Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
                .unwrap()
        };
        let (r, out) = with(r, count).await;
        assert_eq!(out.unwrap(), 0);
        assert_eq!(s.pieces("do:new").await, 0);
        crash(r);
        let r = s.restore("do:new", "b", &fence).await;
        let (_r, out) = with(r, count).await;
        assert_eq!(out.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sql_cannot_move_writes_out_of_reach() {
        let s = setup().await;
        let fence = s.lease("d1:pragmas", 1).await;
        let r = s.restore("d1:pragmas", "a", &fence).await;
        let (r, out) = with(r, |conn| {
            conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .unwrap();
            let refused = [
                "PRAGMA wal_checkpoint(TRUNCATE)",
                "PRAGMA main.wal_checkpoint",
                "PRAGMA journal_mode = DELETE",
                "PRAGMA wal_autocheckpoint = 1",
                "ATTACH 'elsewhere.db' AS other",
            ]
            .into_iter()
            .filter(|sql| conn.execute_batch(sql).is_err())
            .count();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |row| row.get(0))
                .unwrap();
            conn.execute("INSERT INTO t VALUES (0, 'value 0')", [])
                .unwrap();
            (refused, mode)
        })
        .await;
        assert_eq!(out.unwrap(), (5, "wal".to_string()));
        crash(r);
        let r = s.restore("d1:pragmas", "b", &fence).await;
        let (_r, out) = with(r, |conn| rows(conn, "SELECT id, v FROM t")).await;
        assert_eq!(out.unwrap(), expected(0..1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wal_reset_behind_our_back_is_saved_as_a_snapshot() {
        let s = setup().await;
        let fence = s.lease("d1:reset", 1).await;
        let r = s.restore("d1:reset", "a", &fence).await;
        let (r, out) = with(r, |conn| {
            conn.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
                 INSERT INTO t VALUES (0, 'value 0');",
            )
            .unwrap();
        })
        .await;
        out.unwrap();
        // What the authorizer keeps SQL from doing, done around it.
        let (r, out) = with(r, |conn| {
            conn.execute("INSERT INTO t VALUES (1, 'value 1')", [])
                .unwrap();
            conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
            conn.execute("INSERT INTO t VALUES (2, 'value 2')", [])
                .unwrap();
        })
        .await;
        out.unwrap();
        assert_eq!(r.generation(), 1);
        crash(r);
        let r = s.restore("d1:reset", "b", &fence).await;
        let (_r, out) = with(r, |conn| rows(conn, "SELECT id, v FROM t ORDER BY id")).await;
        assert_eq!(out.unwrap(), expected(0..3));
    }

    #[test]
    fn wal_scanning_stops_at_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = Connection::open(&path).unwrap();
        set_wal_mode(&conn).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        for _ in 0..3 {
            conn.execute("INSERT INTO t VALUES (zeroblob(100))", [])
                .unwrap();
        }
        let wal = std::fs::read(suffixed(&path, "-wal")).unwrap();
        let header = WalHeader::parse(&wal).unwrap();
        assert_eq!(header.page_size, 4096);
        let frames = &wal[WAL_HEADER..];
        let (n, _) = committed_prefix(&header, header.checksum, frames);
        assert_eq!(n, frames.len());
        // A damaged last frame: the scan keeps what precedes it.
        let mut damaged = frames.to_vec();
        *damaged.last_mut().unwrap() ^= 1;
        let (n, _) = committed_prefix(&header, header.checksum, &damaged);
        assert_eq!(n, frames.len() - header.frame_size());
        let mut bad_header = wal.clone();
        bad_header[12] ^= 1;
        assert!(WalHeader::parse(&bad_header).is_none());
    }

    #[test]
    fn snapshot_keys_are_one_safe_segment_per_name() {
        let a = snapshot_key("do:w/Class:ïd..", 3);
        let b = snapshot_key("do_w_Class_ïd..", 3);
        let folder = |key: &str| key.rsplit_once('/').unwrap().0.to_string();
        assert!(a.starts_with("sqlite/do_w_Class__d__-"), "{a}");
        assert_eq!(a.matches('/').count(), 2, "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c)),
            "{a}"
        );
        assert_ne!(folder(&a), folder(&b));
        assert_eq!(folder(&a), folder(&snapshot_key("do:w/Class:ïd..", 4)));
        assert_ne!(a, snapshot_key("do:w/Class:ïd..", 3));
    }
}
