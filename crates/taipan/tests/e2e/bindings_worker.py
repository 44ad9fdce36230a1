"""The worker the bindings tests drive: one route per behaviour under test."""

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import js
from pyodide.ffi import run_sync, to_js
import workers
from workers import DurableObject, FormData, Response, WorkerEntrypoint, fetch, import_from_javascript
from workers import env as module_env  # at import time (in the snapshot); live when used


def describe(exc):
    return f"{type(exc).__name__}: {exc}"


class Counter(DurableObject):
    """A Durable Object: a count kept in storage, and calls counted in memory."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0  # in memory: lives as long as this instance

    async def increment(self, n=1):
        self.calls += 1
        count = (await self.ctx.storage.get("count") or 0) + n
        await asyncio.sleep(0)  # a yield between read and write: calls must still not interleave
        await self.ctx.storage.put("count", count)
        return count

    async def state(self):
        self.calls += 1
        listing = await self.ctx.storage.list(prefix="c")
        return {"count": await self.ctx.storage.get("count"), "calls": self.calls, "listed": sorted(listing)}

    def echo(self, message, blob, plain, items):
        return {
            "message_type": type(message).__name__,
            "text": message.text,
            "nested": list(message.n),
            "py": message.to_py(),
            "blob": list(blob),
            "plain_type": type(plain).__name__,
            "items_type": type(items).__name__,
            "same": message,
        }

    def notes(self, text):
        sql = self.ctx.storage.sql
        sql.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)")
        sql.exec("INSERT INTO notes (text) VALUES (?)", text)
        return {"count": sql.exec("SELECT count(*) AS n FROM notes").one().n, "texts": [r.text for r in sql.exec("SELECT text FROM notes ORDER BY id")]}

    async def boom(self):
        raise ValueError("the object refused")

    async def call_self(self):
        try:
            return await self.env.COUNTER.get(self.ctx.id).state()
        except Exception as exc:  # noqa: BLE001
            return describe(exc)

    async def txn(self, mode):
        async def body(txn):
            await txn.put("t:a", 1)
            await txn.put({"t:b": 2, "t:c": 3})
            seen = {"deleted": await txn.delete("t:c"), "a": await txn.get("t:a"), "listed": sorted(await txn.list(prefix="t:"))}
            if mode == "rollback":
                txn.rollback()
            if mode == "fail":
                raise ValueError("abort")
            return seen

        try:
            result = await self.ctx.storage.transaction(body)
        except ValueError as exc:
            result = str(exc)
        return {"result": result, "stored": await self.ctx.storage.list(prefix="t:")}

    async def schedule(self, in_ms, failures=0):
        await self.ctx.storage.put("failures_left", failures)
        await self.ctx.storage.setAlarm(js.Date.now() + in_ms)
        return await self.ctx.storage.getAlarm()

    async def alarm(self, alarm_info=None):
        left = await self.ctx.storage.get("failures_left") or 0
        if left:
            await self.ctx.storage.put("failures_left", left - 1)
            raise RuntimeError("the alarm handler failed on purpose")
        fired = (await self.ctx.storage.get("fired") or 0) + 1
        await self.ctx.storage.put("fired", fired)
        await self.ctx.storage.put("retry_count", alarm_info.retryCount)

    async def alarm_state(self):
        storage = self.ctx.storage
        return {"alarm": await storage.getAlarm(), "fired": await storage.get("fired"), "retry_count": await storage.get("retry_count")}

    async def fetch(self, request):
        count = await self.ctx.storage.get("count")
        return Response(f"{request.method} {request.url} count={count} body={await request.text()}", headers={"x-object": str(self.ctx.id)})


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlsplit(request.url)
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route = getattr(self, "route_" + url.path.strip("/").replace("/", "_").replace("-", "_"), None)
        if route is None:
            return Response("no such route\n", status=404)
        result = await route(request, q)
        return result if isinstance(result, Response) else Response.json(result)

    # -- vars and secrets ---------------------------------------------------

    async def route_env(self, request, q):
        env = self.env
        return {
            "greeting": env.GREETING,
            "limits": env.LIMITS.to_py() if hasattr(env.LIMITS, "to_py") else env.LIMITS,
            "secret_len": len(getattr(env, "API_KEY", "") or ""),
            # The test sends the value reversed, so the request log never shows it.
            "secret_ok": (getattr(env, "API_KEY", None) or "")[::-1] == q.get("expect"),
        }

    # -- KV -----------------------------------------------------------------

    async def route_kv_put(self, request, q):
        options = {}
        if "ttl" in q:
            options["expirationTtl"] = int(q["ttl"])
        if "meta" in q:
            options["metadata"] = {"tag": q["meta"]}
        await self.env.KV.put(q["k"], q["v"], **options)
        return {"stored": q["k"]}

    async def route_kv_get(self, request, q):
        return {"value": await self.env.KV.get(q["k"])}

    async def route_kv_types(self, request, q):
        kv = self.env.KV
        await kv.put("json", json.dumps({"n": 1, "s": "é"}))
        await kv.put("bytes", b"\x00\xff\x10")
        await kv.put("meta", "v", metadata=to_js({"a": [1, 2]}))
        as_json = await kv.get("json", type="json")
        as_json_opts = await kv.get("json", {"type": "json"})
        as_bytes = await kv.get("bytes", type="arrayBuffer")
        stream = await kv.get("bytes", type="stream")
        with_meta = await kv.getWithMetadata("meta")
        missing = await kv.getWithMetadata("missing")
        return {
            "json_n": as_json.n,
            "json_s": as_json["s"],
            "json_opts": as_json_opts.to_py(),
            "bytes": list(as_bytes),
            "stream": list(b"".join(stream)),
            "meta_value": with_meta.value,
            "meta": with_meta.metadata.to_py(),
            "missing": [missing.value, missing.metadata],
        }

    async def route_kv_list(self, request, q):
        options = {k: q[k] for k in ("prefix", "cursor") if q.get(k)}
        if "limit" in q:
            options["limit"] = int(q["limit"])
        listing = await self.env.KV.list(**options)
        return {
            "keys": [k.name for k in listing.keys],
            "complete": listing.list_complete,
            "cursor": getattr(listing, "cursor", None),
        }

    async def route_kv_bad(self, request, q):
        kv = self.env.KV
        errors = {}
        for name, call in {
            "put_int": lambda: kv.put("k", 123),
            "key_int": lambda: kv.get(5),
            "bad_type": lambda: kv.get("k", type="xml"),
            "short_ttl": lambda: kv.put("k", "v", expirationTtl=5),
            "empty_key": lambda: kv.put("", "v"),
            "long_key": lambda: kv.get("k" * 600),
            "big_meta": lambda: kv.put("k", "v", metadata={"x": "y" * 2000}),
            "bad_limit": lambda: kv.list(limit=5000),
        }.items():
            try:
                await call()
                errors[name] = "no error"
            except Exception as exc:  # noqa: BLE001
                errors[name] = describe(exc)
        return errors

    async def route_kv_count(self, request, q):
        total, cursor = 0, None
        while True:
            listing = await self.env.KV.list(prefix=q.get("prefix", ""), cursor=cursor)
            total += len(listing.keys)
            if listing.list_complete:
                return {"count": total}
            cursor = listing.cursor

    # -- D1 -----------------------------------------------------------------

    async def route_d1_add(self, request, q):
        result = await self.env.DB.prepare("INSERT INTO notes (author, body) VALUES (?1, ?2)").bind(q["author"], q["body"]).run()
        return {"id": result.meta.last_row_id, "changes": result.meta.changes, "success": result.success}

    async def route_d1_read(self, request, q):
        db = self.env.DB
        rows = await db.prepare("SELECT id, author, body FROM notes ORDER BY id").all()
        first = await db.prepare("SELECT author FROM notes ORDER BY id LIMIT 1").first()
        count = await db.prepare("SELECT count(*) AS n FROM notes").first("n")
        raw = await db.prepare("SELECT id, author FROM notes ORDER BY id LIMIT 2").raw(columnNames=True)
        nothing = await db.prepare("SELECT * FROM notes WHERE id = ?").bind(-1).first()
        return {
            "authors": [r.author for r in rows.results],
            "first": first.to_py() if first is not None else None,
            "first_results0": rows.results[0]["body"] if rows.results else None,
            "count": count,
            "raw": [list(r) for r in raw],
            "nothing": nothing,
        }

    async def route_d1_types(self, request, q):
        db = self.env.DB
        await db.exec("CREATE TABLE IF NOT EXISTS typed (i INTEGER, r REAL, t TEXT, b BLOB, n TEXT)")
        await db.prepare("DELETE FROM typed").run()
        await db.prepare("INSERT INTO typed VALUES (?, ?, ?, ?, ?)").bind(7, 2.5, "ü", b"\x01\x02", None).run()
        row = await db.prepare("SELECT * FROM typed").first()
        return {"i": row.i, "r": row.r, "t": row.t, "b": list(row.b), "n": row.n, "bool": await db.prepare("SELECT ? AS v").bind(True).first("v")}

    async def route_d1_batch(self, request, q):
        db = self.env.DB
        before = await db.prepare("SELECT count(*) AS n FROM notes").first("n")
        try:
            await db.batch([
                db.prepare("INSERT INTO notes (author, body) VALUES (?, ?)").bind("batch", "one"),
                db.prepare("INSERT INTO nowhere VALUES (1)"),
            ])
            failed = "no error"
        except Exception as exc:  # noqa: BLE001
            failed = describe(exc)
        after_failed = await db.prepare("SELECT count(*) AS n FROM notes").first("n")
        results = await db.batch([
            db.prepare("INSERT INTO notes (author, body) VALUES (?, ?)").bind("batch", "two"),
            db.prepare("SELECT count(*) AS n FROM notes"),
        ])
        try:
            await db.prepare("SELECT * FROM notes WHERE id = ?").bind(object()).all()
            bad_bind = "no error"
        except Exception as exc:  # noqa: BLE001
            bad_bind = describe(exc)
        return {
            "failed": failed,
            "unchanged": before == after_failed,
            "count_after": results[1].results[0].n,
            "bad_bind": bad_bind,
            "js_error_caught": isinstance(failed, str),
        }

    async def route_d1_error_class(self, request, q):
        try:
            await self.env.DB.prepare("SELECT * FROM nope").all()
        except js.Error as exc:
            return {"caught": "js.Error", "message": str(exc)}
        return {"caught": None}

    # -- R2 -----------------------------------------------------------------

    async def route_r2_put(self, request, q):
        # The request body streams into the bucket.
        obj = await self.env.FILES.put(
            q["k"], request, httpMetadata={"contentType": "text/plain"}, customMetadata={"by": "test"}
        )
        return {"key": obj.key, "size": obj.size, "etag": obj.etag, "httpEtag": obj.httpEtag}

    async def route_r2_get(self, request, q):
        options = {}
        if "offset" in q:
            options["range"] = {"offset": int(q["offset"]), "length": int(q["length"])}
        if "suffix" in q:
            options["range"] = {"suffix": int(q["suffix"])}
        obj = await self.env.FILES.get(q["k"], **options)
        if obj is None:
            return Response("missing\n", status=404)
        headers = {"etag": obj.httpEtag, "x-by": obj.customMetadata.by}
        response = Response(obj.body, headers=headers)
        obj.writeHttpMetadata(response.headers)
        return response

    async def route_r2_head(self, request, q):
        obj = await self.env.FILES.head(q["k"])
        return None if obj is None else {"size": obj.size, "type": obj.httpMetadata.contentType, "year": obj.uploaded.year}

    async def route_r2_list(self, request, q):
        listing = await self.env.FILES.list(prefix=q.get("prefix"), delimiter=q.get("delimiter"), limit=int(q.get("limit", 1000)), cursor=q.get("cursor"))
        return {
            "keys": [o.key for o in listing.objects],
            "prefixes": list(listing.delimitedPrefixes),
            "truncated": listing.truncated,
            "cursor": getattr(listing, "cursor", None),
        }

    async def route_r2_delete(self, request, q):
        await self.env.FILES.delete(q["k"].split(","))
        return {"deleted": q["k"]}

    # -- waitUntil, cloudflare:workers, run_sync --------------------------------

    async def route_wait(self, request, q):
        async def later():
            await asyncio.sleep(0.2)
            await self.env.KV.put("waited", q["v"])

        if q.get("module"):
            workers.wait_until(later())
        else:
            self.ctx.waitUntil(later())
        self.ctx.passThroughOnException()
        return Response("sent before the work\n")

    async def route_form(self, request, q):
        form = await request.form_data()
        upload = form["upload"]
        reply = FormData({"greeting": module_env.GREETING})
        reply.append("tags", ",".join(form.get_all("tag")))
        reply.append("file", upload)
        echoed = await Response(reply).form_data()
        return {
            "title": form["title"],
            "tags": form.get_all("tag"),
            "file": [upload.name, upload.type, await upload.text()],
            "echo": [echoed["greeting"], echoed["tags"], echoed["file"].name, await echoed["file"].text()],
        }

    async def route_sync(self, request, q):
        env = import_from_javascript("cloudflare:workers").env
        run_sync(env.KV.put("sync", "ran"))
        return {"value": run_sync(env.KV.get("sync"))}

    async def route_gather(self, request, q):
        kv = self.env.KV
        await asyncio.gather(*(kv.put(f"g{i}", str(i)) for i in range(5)))
        values = await asyncio.gather(*(kv.get(f"g{i}") for i in range(5)))
        return {"values": values}

    # -- fetch and services -------------------------------------------------

    async def route_fetch(self, request, q):
        try:
            response = await fetch(q["url"], method="POST", body="ping", headers={"x-test": "1"})
        except Exception as exc:  # noqa: BLE001
            return Response(describe(exc), status=502)
        return {"status": response.status, "body": await response.text(), "header": response.headers.get("x-upstream")}

    async def route_urllib(self, request, q):
        # The standard library's clients go through the host too (http.client is replaced).
        import http.client
        import urllib.error
        import urllib.request
        from urllib.parse import urlsplit

        try:
            req = urllib.request.Request(q["url"] + "urllib", data=b"ping", headers={"X-Test": "1"}, method="PUT")
            with urllib.request.urlopen(req, timeout=10) as response:
                body = response.read().decode()
                status, header = response.status, response.headers.get("x-upstream")
        except urllib.error.URLError as exc:
            return Response(f"URLError: {exc.reason}", status=502)
        parts = urlsplit(q["url"])
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", "/direct")
        direct = conn.getresponse()
        chunks = []
        while chunk := direct.read(3):
            chunks.append(chunk.decode())
        conn.close()
        return {
            "status": status,
            "body": body,
            "header": header,
            "direct": [direct.status, direct.reason, "".join(chunks), len(chunks) > 1],
        }

    async def route_jsfetch(self, request, q):
        response = await js.fetch(q["url"])
        return Response(await response.text(), status=response.status)

    async def route_fetch_many(self, request, q):
        done = 0
        try:
            for _ in range(int(q["n"])):
                response = await fetch(q["url"])
                await response.text()
                done += 1
        except Exception as exc:  # noqa: BLE001
            return {"done": done, "error": describe(exc)}
        return {"done": done, "error": None}

    async def route_service(self, request, q):
        response = await self.env.API.fetch("https://api.internal/hello?who=front", headers={"x-from": "front"})
        return {"status": response.status, "body": await response.text()}

    async def route_service_rpc(self, request, q):
        api = self.env.API
        out = {
            "sum": await api.add(2, 3),
            "types": await api.kinds(b"\x00", {"k": [1, 2]}, None, flag=True),
            "admin": await self.env.ADMIN.whoami("front"),
        }
        admin = await self.env.ADMIN.fetch("https://admin.internal/stats")
        out["admin_fetch"] = [admin.status, await admin.text()]
        for name, call in [
            ("raises", lambda: api.fail("bad input")),
            ("missing", lambda: api.no_such_method()),
            ("private", lambda: api.hidden()),
        ]:
            try:
                await call()
                out[name] = "no error"
            except Exception as exc:  # noqa: BLE001
                out[name] = describe(exc)
        return out

    # -- Durable Objects -----------------------------------------------------

    async def route_do_increment(self, request, q):
        stub = self.env.COUNTER.get(self.env.COUNTER.idFromName(q["name"]))
        return {"count": await stub.increment(int(q.get("n", "1")))}

    async def route_do_self_call(self, request, q):
        return {"error": await self.env.COUNTER.getByName("selfish").call_self()}

    async def route_do_txn(self, request, q):
        return await self.env.COUNTER.getByName("txn-" + q["mode"]).txn(q["mode"])

    async def route_do_alarm_set(self, request, q):
        stub = self.env.COUNTER.getByName(q["name"])
        at = await stub.schedule(int(q["ms"]), int(q.get("failures", "0")))
        return {"at": at}

    async def route_do_alarm_state(self, request, q):
        return await self.env.COUNTER.getByName(q["name"]).alarm_state()

    async def route_do_state(self, request, q):
        return await self.env.COUNTER.getByName(q["name"]).state()

    async def route_do_parallel(self, request, q):
        stub = self.env.COUNTER.getByName(q["name"])
        results = await asyncio.gather(*(stub.increment(1) for _ in range(int(q["n"]))))
        return {"results": sorted(results)}

    async def route_do_echo(self, request, q):
        stub = self.env.COUNTER.getByName("echo")
        result = await stub.echo(to_js({"text": "hi", "n": [1, 2]}), b"\x00\x01", {"plain": True}, (1, 2))
        same = result["same"]
        return {**result, "same": [type(same).__name__, same.text]}

    async def route_do_notes(self, request, q):
        return await self.env.COUNTER.getByName(q["name"]).notes(q["text"])

    async def route_do_errors(self, request, q):
        stub = self.env.COUNTER.getByName("errors")
        errors = []
        for call in (stub.boom, stub.missing, lambda: stub.increment("x")):
            try:
                await call()
                errors.append(None)
            except Exception as exc:  # noqa: BLE001
                errors.append(describe(exc))
        try:
            self.env.COUNTER.idFromString("nope")
        except TypeError as exc:
            errors.append(describe(exc))
        return {"errors": errors}

    async def route_do_fetch(self, request, q):
        stub = self.env.COUNTER.getByName(q["name"])
        response = await stub.fetch("https://counter.internal/path?x=1", method="POST", body="hello")
        ids = self.env.COUNTER.idFromName(q["name"])
        return {
            "status": response.status,
            "text": await response.text(),
            "same_id": response.headers.get("x-object") == ids.toString(),
            "unique_differs": self.env.COUNTER.newUniqueId().toString() != self.env.COUNTER.newUniqueId().toString(),
        }

    # -- cron ---------------------------------------------------------------

    async def scheduled(self, controller, env, ctx):
        runs = int(await env.KV.get("cron_runs") or 0)
        await env.KV.put("cron_runs", str(runs + 1))
        await env.KV.put("cron_last", controller.cron)
