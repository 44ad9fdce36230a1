//! D1 databases (`d1_databases`): prepared statements, batches in one
//! transaction, `exec`, on SQLite. Errors read as D1's (`D1_ERROR: ...`).
//! Also the local side of `taipan d1 execute` and `taipan d1 migrations apply`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use futures::future::BoxFuture;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{Connection, Transaction};
use serde_json::{Value, json};

use crate::Binding;
use crate::protocol::{BindingError, Call, Reply};
use crate::store::Database;

/// Statements in one `batch` (D1 allows 50 per batch on the free plan;
/// we allow more but keep a bound).
pub const MAX_BATCH_STATEMENTS: usize = 1000;
/// Bound parameters per statement (D1's limit).
pub const MAX_BOUND_PARAMETERS: usize = 100;
/// Rows one statement may return to the guest.
pub const MAX_RESULT_ROWS: usize = 100_000;

pub struct D1Database {
    db: Database,
}

impl D1Database {
    pub fn open(db: Database) -> Self {
        Self { db }
    }

    async fn batch(&self, call: Call) -> Result<Reply, BindingError> {
        let statements = parse_statements(&call.args)?;
        let results = self
            .db
            .with(move |conn| Ok(run_batch(conn, &statements)))
            .await??;
        Ok(Reply::Json(Value::Array(results)))
    }

    async fn exec(&self, call: Call) -> Result<Reply, BindingError> {
        let sql = call.str_arg("sql")?.to_string();
        let started = Instant::now();
        let count = self
            .db
            .with(move |conn| Ok(exec_script(conn, &sql)))
            .await??;
        Ok(Reply::Json(json!({
            "count": count,
            "duration": started.elapsed().as_secs_f64() * 1e3,
        })))
    }
}

impl Binding for D1Database {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            match op.as_str() {
                "batch" => self.batch(call).await,
                "exec" => self.exec(call).await,
                other => Err(BindingError::type_error(format!(
                    "D1 has no operation {other:?}"
                ))),
            }
        })
    }
}

pub struct Statement {
    pub sql: String,
    pub params: Vec<Sql>,
}

fn parse_statements(args: &Value) -> Result<Vec<Statement>, BindingError> {
    let list = args
        .get("statements")
        .and_then(Value::as_array)
        .ok_or_else(|| BindingError::type_error("batch() needs a list of statements"))?;
    if list.len() > MAX_BATCH_STATEMENTS {
        return Err(BindingError::range_error(format!(
            "D1_ERROR: a batch of {} statements is over the limit of {MAX_BATCH_STATEMENTS}",
            list.len()
        )));
    }
    list.iter().map(parse_statement).collect()
}

/// One statement: `{sql, params}`.
pub(crate) fn parse_statement(s: &Value) -> Result<Statement, BindingError> {
    let sql = s
        .get("sql")
        .and_then(Value::as_str)
        .ok_or_else(|| BindingError::type_error("a statement needs its SQL"))?;
    let params = s
        .get("params")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if params.len() > MAX_BOUND_PARAMETERS {
        return Err(BindingError::range_error(format!(
            "D1_ERROR: too many SQL variables: {} (the limit is {MAX_BOUND_PARAMETERS})",
            params.len()
        )));
    }
    Ok(Statement {
        sql: sql.to_string(),
        params: params.iter().map(to_sql).collect::<Result<_, _>>()?,
    })
}

fn to_sql(value: &Value) -> Result<Sql, BindingError> {
    Ok(match value {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Sql::Text(s.clone()),
        Value::Object(o) if o.contains_key("$blob") => {
            let text = o["$blob"].as_str().unwrap_or_default();
            Sql::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| BindingError::type_error("D1_TYPE_ERROR: malformed blob"))?,
            )
        }
        other => {
            return Err(BindingError::type_error(format!(
                "D1_TYPE_ERROR: type {other} not supported for a bound value"
            )));
        }
    })
}

/// A result row as a JSON array of its `width` columns.
fn row_json(row: &rusqlite::Row<'_>, width: usize) -> Result<Value, BindingError> {
    (0..width)
        .map(|i| row.get_ref(i).map(to_json))
        .collect::<Result<_, _>>()
        .map(Value::Array)
        .map_err(d1_error)
}

fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            json!({"$blob": base64::engine::general_purpose::STANDARD.encode(b)})
        }
    }
}

fn d1_error(e: rusqlite::Error) -> BindingError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(err, _) => match err.code {
            rusqlite::ErrorCode::ConstraintViolation => "SQLITE_CONSTRAINT",
            rusqlite::ErrorCode::DatabaseBusy => "SQLITE_BUSY",
            _ => "SQLITE_ERROR",
        },
        _ => "SQLITE_ERROR",
    };
    let message = match &e {
        rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
        other => other.to_string(),
    };
    BindingError::error(format!("D1_ERROR: {message}: {code}"))
}

/// Run `statements` in one transaction: all of them, or (on an error) none.
pub fn run_batch(
    conn: &mut Connection,
    statements: &[Statement],
) -> Result<Vec<Value>, BindingError> {
    let tx = conn.transaction().map_err(d1_error)?;
    let mut results = Vec::with_capacity(statements.len());
    for statement in statements {
        results.push(run_statement(&tx, statement)?);
    }
    tx.commit().map_err(d1_error)?;
    Ok(results)
}

fn run_statement(tx: &Transaction<'_>, statement: &Statement) -> Result<Value, BindingError> {
    let started = Instant::now();
    let mut stmt = tx.prepare(&statement.sql).map_err(d1_error)?;
    let expected = stmt.parameter_count();
    if expected != statement.params.len() {
        return Err(BindingError::range_error(format!(
            "D1_ERROR: wrong number of bound parameters: the statement takes {expected}, got {}",
            statement.params.len()
        )));
    }
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let before = tx.total_changes();
    let mut rows = Vec::new();
    {
        let mut cursor = stmt
            .query(rusqlite::params_from_iter(statement.params.iter()))
            .map_err(d1_error)?;
        while let Some(row) = cursor.next().map_err(d1_error)? {
            if rows.len() >= MAX_RESULT_ROWS {
                return Err(BindingError::range_error(format!(
                    "D1_ERROR: the result is over {MAX_RESULT_ROWS} rows; add a LIMIT"
                )));
            }
            rows.push(row_json(row, columns.len())?);
        }
    }
    let changes = tx.total_changes() - before;
    let read_only = stmt.readonly();
    Ok(json!({
        "columns": columns,
        "rows": rows,
        "meta": {
            "duration": started.elapsed().as_secs_f64() * 1e3,
            "changes": changes,
            "last_row_id": tx.last_insert_rowid(),
            "changed_db": !read_only && changes > 0,
            "rows_read": rows.len(),
            "rows_written": if read_only { 0 } else { changes },
            "size_after": database_size(tx),
        },
    }))
}

fn database_size(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// Run a script of statements (`exec`, `--file`, migrations) in one
/// transaction; returns how many statements ran.
pub fn exec_script(conn: &mut Connection, sql: &str) -> Result<usize, BindingError> {
    run_script(conn, sql, false).map(|(count, _)| count)
}

/// Run `sql` statement by statement, as `sqlite3_exec` does: each one is
/// prepared only after the one before it ran, so a script may create a table
/// and then use it. All in one transaction: on an error nothing is kept.
/// With `keep_rows`, also the last statement's result (`columns`, `rows`,
/// `meta.changes`).
fn run_script(
    conn: &mut Connection,
    sql: &str,
    keep_rows: bool,
) -> Result<(usize, Option<Value>), BindingError> {
    let tx = conn.transaction().map_err(d1_error)?;
    let mut count = 0;
    let mut last = None;
    // Only the last statement's rows are shown: an earlier one may return
    // more than the cap, which fails the script only if it is the last.
    let mut too_many = false;
    {
        let mut batch = rusqlite::Batch::new(&tx, sql);
        while let Some(mut stmt) = batch.next().map_err(d1_error)? {
            let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
            let before = tx.total_changes();
            let mut rows = Vec::new();
            too_many = false;
            let mut cursor = stmt.raw_query();
            while let Some(row) = cursor.next().map_err(d1_error)? {
                if !keep_rows || too_many {
                    continue;
                }
                if rows.len() >= MAX_RESULT_ROWS {
                    too_many = true;
                    rows.clear();
                    continue;
                }
                rows.push(row_json(row, columns.len())?);
            }
            count += 1;
            if keep_rows {
                let changes = tx.total_changes() - before;
                last =
                    Some(json!({"columns": columns, "rows": rows, "meta": {"changes": changes}}));
            }
        }
    }
    if too_many {
        return Err(BindingError::range_error(format!(
            "D1_ERROR: the result is over {MAX_RESULT_ROWS} rows; add a LIMIT"
        )));
    }
    tx.commit().map_err(d1_error)?;
    Ok((count, last))
}

/// `taipan d1 execute`: run `sql` (one statement or a script); the count of
/// statements and the last statement's rows, shown as a table.
pub fn execute_for_cli(db: &Database, sql: &str) -> Result<(usize, Option<Value>), BindingError> {
    let (count, last) = db.with_blocking(|conn| run_script(conn, sql, true))?;
    // A script whose last statement returns no rows is summed up by its count.
    let rows = |r: &Value| r["columns"].as_array().is_some_and(|c| !c.is_empty());
    Ok((count, last.filter(|r| count == 1 || rows(r))))
}

/// Migrations applied so far, recorded as wrangler does in `d1_migrations`.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS d1_migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);";

/// Apply every `*.sql` in `dir` not applied yet, in name order, each in its
/// own transaction. Returns the names applied.
pub fn apply_migrations(db: &Database, dir: &Path) -> anyhow::Result<Vec<String>> {
    apply_migration_list(db, &read_migrations(dir)?)
}

/// The `*.sql` files of a migrations folder as (file name, SQL), in name order.
pub fn read_migrations(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| {
            anyhow::anyhow!(
                "could not read the migrations folder \"{}\": {e}",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sql = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("could not read \"{}\": {e}", file.display()))?;
            Ok((name, sql))
        })
        .collect()
}

/// Apply the `(name, sql)` migrations not applied yet, in the order given,
/// each in its own transaction (a failing one is rolled back and stops the
/// rest). Returns the names applied.
pub fn apply_migration_list(
    db: &Database,
    migrations: &[(String, String)],
) -> anyhow::Result<Vec<String>> {
    db.with_blocking(|conn| {
        conn.execute_batch(MIGRATIONS_TABLE)?;
        let mut applied = Vec::new();
        for (name, sql) in migrations {
            let done: bool = conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM d1_migrations WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )?;
            if done {
                continue;
            }
            let script = format!(
                "{sql}\n;INSERT INTO d1_migrations (name) VALUES ('{}');",
                name.replace('\'', "''")
            );
            exec_script(conn, &script).map_err(|e| {
                anyhow::anyhow!(
                    "migration \"{name}\" failed and was rolled back: {}",
                    e.message
                )
            })?;
            applied.push(name.clone());
        }
        Ok(applied)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("d.sqlite")).unwrap();
        (dir, db)
    }

    fn stmt(sql: &str, params: Vec<Sql>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
        }
    }

    /// The binding as a guest calls it, with no sandbox (`crate::testing`):
    /// SQL and parameters with newlines and a blob, in the arguments line.
    #[tokio::test]
    async fn exec_and_batch_through_the_wire_format() {
        let (_dir, db) = crate::testing::database();
        let d1: Arc<dyn Binding> = Arc::new(D1Database::open(db));
        let call = |op: &'static str, args: Value| crate::testing::call(d1.clone(), op, args, b"");
        let (done, _) = call("exec", json!({"sql": "CREATE TABLE t (v TEXT, b BLOB)"}))
            .await
            .unwrap();
        assert_eq!(done["count"], 1);
        let insert = "INSERT INTO t (v, b)\nVALUES (?, ?)";
        let (results, _) = call(
            "batch",
            json!({"statements": [
                {"sql": insert, "params": ["a\nb ☃", {"$blob": "AAEC"}]},
                {"sql": "SELECT v, b FROM t", "params": []},
            ]}),
        )
        .await
        .unwrap();
        assert_eq!(results[0]["meta"]["changes"], 1);
        assert_eq!(results[1]["rows"], json!([["a\nb ☃", {"$blob": "AAEC"}]]));
        let error = call(
            "batch",
            json!({"statements": [{"sql": "SELEC 1", "params": []}]}),
        )
        .await
        .unwrap_err();
        assert!(error.message.contains("D1_ERROR"), "{}", error.message);
    }

    #[test]
    fn a_failed_batch_changes_nothing() {
        let (_dir, db) = db();
        db.with_blocking(|c| {
            exec_script(c, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
        })
        .unwrap();
        let err = db
            .with_blocking(|c| {
                run_batch(
                    c,
                    &[
                        stmt("INSERT INTO t (v) VALUES (?)", vec![Sql::Text("a".into())]),
                        stmt("INSERT INTO t (v) VALUES (?)", vec![Sql::Text("a".into())]),
                    ],
                )
            })
            .unwrap_err();
        assert!(
            err.message
                .starts_with("D1_ERROR: UNIQUE constraint failed"),
            "{}",
            err.message
        );
        let rows = db
            .with_blocking(|c| run_batch(c, &[stmt("SELECT count(*) AS n FROM t", vec![])]))
            .unwrap();
        assert_eq!(rows[0]["rows"][0][0], 0);
    }

    #[test]
    fn values_round_trip_with_meta() {
        let (_dir, db) = db();
        let out = db
            .with_blocking(|c| {
                exec_script(c, "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)")?;
                run_batch(
                    c,
                    &[
                        stmt(
                            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                            vec![
                                Sql::Integer(7),
                                Sql::Real(1.5),
                                Sql::Text("hé".into()),
                                Sql::Blob(vec![0, 255]),
                                Sql::Null,
                            ],
                        ),
                        stmt("SELECT * FROM t", vec![]),
                    ],
                )
            })
            .unwrap();
        assert_eq!(out[0]["meta"]["changes"], 1);
        assert_eq!(out[0]["meta"]["last_row_id"], 1);
        assert_eq!(out[1]["columns"], json!(["i", "r", "s", "b", "n"]));
        assert_eq!(
            out[1]["rows"][0],
            json!([7, 1.5, "hé", {"$blob": "AP8="}, null])
        );
    }

    #[test]
    fn scripts_run_one_statement_after_another() {
        // A statement that names a table the script creates just before it
        // cannot be prepared up front (Cloudflare's quotes example).
        let (_dir, db) = db();
        let script = "CREATE TABLE IF NOT EXISTS qtable (id INTEGER PRIMARY KEY, quote TEXT);
            INSERT INTO qtable (quote) SELECT * FROM (VALUES ('a'), ('b'))
                WHERE NOT EXISTS (SELECT 1 FROM qtable);
            SELECT count(*) AS n FROM qtable;";
        let (count, last) = execute_for_cli(&db, script).unwrap();
        assert_eq!(count, 3);
        assert_eq!(last.unwrap()["rows"], json!([[2]]));
        // Run again: the guard holds, still two rows.
        let (_, last) = execute_for_cli(&db, script).unwrap();
        assert_eq!(last.unwrap()["rows"], json!([[2]]));
        // A failing statement late in a script undoes the earlier ones.
        let err = execute_for_cli(
            &db,
            "INSERT INTO qtable (quote) VALUES ('c'); SELECT * FROM nope;",
        )
        .unwrap_err();
        assert!(
            err.message.contains("no such table: nope"),
            "{}",
            err.message
        );
        let (_, last) = execute_for_cli(&db, "SELECT count(*) FROM qtable").unwrap();
        assert_eq!(last.unwrap()["rows"], json!([[2]]));
        // exec() and migrations take the same path.
        db.with_blocking(|c| {
            exec_script(c, "CREATE TABLE t2 (x); INSERT INTO t2 SELECT * FROM (VALUES (1)) WHERE NOT EXISTS (SELECT 1 FROM t2);")
        })
        .unwrap();
    }

    #[test]
    fn migrations_apply_once_in_order() {
        let (dir, db) = db();
        let migrations = dir.path().join("migrations");
        std::fs::create_dir(&migrations).unwrap();
        std::fs::write(migrations.join("0001_init.sql"), "CREATE TABLE a (x);").unwrap();
        std::fs::write(
            migrations.join("0002_more.sql"),
            "INSERT INTO a VALUES (1); INSERT INTO a VALUES (2);",
        )
        .unwrap();
        assert_eq!(
            apply_migrations(&db, &migrations).unwrap(),
            ["0001_init.sql", "0002_more.sql"]
        );
        assert!(apply_migrations(&db, &migrations).unwrap().is_empty());
        std::fs::write(
            migrations.join("0003_bad.sql"),
            "INSERT INTO a VALUES (3); INSERT INTO nope VALUES (1);",
        )
        .unwrap();
        let err = apply_migrations(&db, &migrations).unwrap_err().to_string();
        assert!(
            err.contains("0003_bad.sql") && err.contains("no such table"),
            "{err}"
        );
        let (_, rows) = execute_for_cli(&db, "SELECT count(*) FROM a").unwrap();
        assert_eq!(
            rows.unwrap()["rows"][0][0],
            2,
            "the failed migration was rolled back"
        );
    }
}
