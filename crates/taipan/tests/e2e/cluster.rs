//! Cluster mode: three `taipan serve` nodes on one PostgreSQL and one S3
//! server (both real, started here), on loopback: deploys, secrets, KV,
//! Durable Objects (and their WebSockets), D1, workflows, alarms, and a node lost
//! mid-load.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::{CONFIG, Server, project, taipan, text_of};
use crate::s3::S3Server;

const TOKEN: &str = "cluster-admin-token-0123456789";
const SECRETS_KEY: &str = "5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc5ecc";
/// How long a node may take to serve what another node deployed.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(60);

const BINDINGS: &str = r#"
[[kv_namespaces]]
binding = "KV"
id = "shared-kv"

[[d1_databases]]
binding = "DB"
database_name = "shared-db"
database_id = "shared-db"

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[durable_objects.bindings]]
name = "ROOM"
class_name = "Room"

[[workflows]]
name = "flow"
binding = "FLOW"
class_name = "Flow"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter", "Room"]
"#;

fn app(version: &str) -> tempfile::TempDir {
    let config = CONFIG.replace("name = \"t\"", "name = \"app\"") + BINDINGS;
    let body = format!(
        r#"from urllib.parse import urlparse, parse_qs
import js
from workers import DurableObject, Response, WebSocketPair, WorkflowEntrypoint

class Counter(DurableObject):
    async def inc(self):
        n = (await self.ctx.storage.get("n") or 0) + 1
        await self.ctx.storage.put("n", n)
        return n

    async def arm(self, in_ms):
        await self.ctx.storage.setAlarm(js.Date.now() + in_ms)
        return "armed"

    async def alarm(self, alarm_info=None):
        fired = (await self.ctx.storage.get("fired") or 0) + 1
        await self.ctx.storage.put("fired", fired)

    async def fired(self):
        return await self.ctx.storage.get("fired") or 0

class Room(DurableObject):
    async def fetch(self, request):
        name = parse_qs(urlparse(request.url).query).get("name", ["anon"])[0]
        client, server = WebSocketPair.new().object_values()
        self.ctx.acceptWebSocket(server)
        server.serializeAttachment({{"name": name}})
        self._say(f"joined {{name}}")
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        self._say(f"{{ws.deserializeAttachment()['name']}}: {{message}}")

    async def webSocketClose(self, ws, code, reason, was_clean):
        self._say(f"left {{ws.deserializeAttachment()['name']}}", skip=ws)

    def _say(self, text, skip=None):
        for ws in self.ctx.getWebSockets():
            if ws is not skip and ws.readyState == ws.OPEN:
                ws.send(text)

class Flow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("greet")
        async def greet():
            return "hello " + event["payload"]["who"]

        greeting = await greet()
        go = await step.wait_for_event("go", "go", timeout="1 hour")
        return greeting + " via " + go["payload"]["by"]

async def on_fetch(request, env):
    url = urlparse(request.url)
    if url.path == "/room":
        return await env.ROOM.getByName("lobby").fetch(request)
    q = {{k: v[0] for k, v in parse_qs(url.query).items()}}
    if url.path == "/put":
        await env.KV.put(q["k"], q["v"])
        return Response("ok")
    if url.path == "/get":
        value = await env.KV.get(q["k"])
        return Response(value or "missing", status=200 if value is not None else 404)
    if url.path == "/inc":
        stub = env.COUNTER.get(env.COUNTER.idFromName(q["name"]))
        return Response(str(await stub.inc()))
    if url.path == "/alarm":
        stub = env.COUNTER.get(env.COUNTER.idFromName(q["name"]))
        return Response(await stub.arm(int(q.get("in", "1000"))))
    if url.path == "/fired":
        stub = env.COUNTER.get(env.COUNTER.idFromName(q["name"]))
        return Response(str(await stub.fired()))
    if url.path == "/d1/add":
        await env.DB.exec("CREATE TABLE IF NOT EXISTS t (v TEXT PRIMARY KEY)")
        await env.DB.prepare("INSERT INTO t (v) VALUES (?)").bind(q["v"]).run()
        return Response("ok")
    if url.path == "/d1/count":
        row = await env.DB.prepare("SELECT count(*) AS n FROM t").first()
        return Response(str(row["n"]))
    if url.path == "/flow/create":
        instance = await env.FLOW.create(id=q["id"], params={{"who": q["who"]}})
        return Response(instance.id)
    if url.path == "/flow/event":
        instance = await env.FLOW.get(q["id"])
        await instance.send_event(type="go", payload={{"by": q["by"]}})
        return Response("sent")
    if url.path == "/flow/status":
        status = (await (await env.FLOW.get(q["id"])).status()).to_py()
        return Response(f"{{status['status']}} {{status.get('output') or ''}}".strip())
    if url.path == "/secret":
        return Response(getattr(env, "TOKEN", "unset"))
    return Response({version:?})
"#
    );
    project(&[("wrangler.toml", &config), ("src/entry.py", &body)])
}

struct Cluster {
    env: Vec<(String, String)>,
    _database: taipan_cluster::testing::TestDatabase,
    _s3: S3Server,
}

impl Cluster {
    fn start() -> Cluster {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let database = runtime.block_on(taipan_cluster::testing::TestDatabase::create());
        let s3 = S3Server::start();
        let mut env = s3.env();
        env.extend([
            ("TAIPAN_DATABASE_URL".into(), database.url().to_string()),
            ("TAIPAN_OBJECTS_URL".into(), s3.url()),
            ("TAIPAN_SECRETS_KEY".into(), SECRETS_KEY.into()),
            ("TAIPAN_ADMIN_TOKEN".into(), TOKEN.into()),
        ]);
        Cluster {
            env,
            _database: database,
            _s3: s3,
        }
    }

    fn node(&self, data: &Path) -> Server {
        Server::serve_env(data, &["--internal-listen", "127.0.0.1:0"], &self.env)
    }
}

fn cli(node: &Server, args: &[&str]) -> Output {
    taipan()
        .args(args)
        .args(["--server", &node.admin, "--token", TOKEN])
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    let text = text_of(&output);
    assert!(output.status.success(), "{text}");
    text
}

fn get(node: &Server, path: &str) -> Option<(u16, String)> {
    let response = Server::client()
        .get(format!("{}{path}", node.url))
        .header("host", "app.localhost")
        .timeout(Duration::from_secs(10))
        .send()
        .ok()?;
    Some((response.status().as_u16(), response.text().ok()?))
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Join the room through `node` as `name`.
fn join(node: &Server, name: &str) -> Socket {
    use tungstenite::client::IntoClientRequest as _;
    let url = format!(
        "{}/room?name={name}",
        node.url.replacen("http://", "ws://", 1)
    );
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("host", "app.localhost".parse().unwrap());
    let (socket, response) =
        tungstenite::connect(request).unwrap_or_else(|e| panic!("{e}\n{}", node.output()));
    assert_eq!(response.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
    socket
}

/// The next text a member hears.
fn said(socket: &mut Socket, node: &Server) -> String {
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => return text.to_string(),
            Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => {}
            other => panic!("{other:?}\n{}", node.output()),
        }
    }
}

/// Wait until `node` answers `path` with `want`; how long it took.
fn until(node: &Server, path: &str, want: (u16, &str)) -> Duration {
    let started = Instant::now();
    loop {
        let got = get(node, path);
        if got.as_ref().is_some_and(|(s, b)| (*s, b.as_str()) == want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < SWITCH_TIMEOUT,
            "{} never answered {want:?} for {path} (last: {got:?}):\n{}",
            node.url,
            node.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_nodes_share_deploys_secrets_and_kv_and_survive_losing_one() {
    let cluster = Cluster::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut a = cluster.node(dirs[0].path());
    let b = cluster.node(dirs[1].path());
    let c = cluster.node(dirs[2].path());

    // Every node lists the three, alive.
    let nodes = ok(cli(&c, &["nodes"]));
    assert_eq!(nodes.matches(" live ").count(), 3, "{nodes}");

    // Deploy once, through A: B and C serve it too.
    let v1 = app("one");
    let started = Instant::now();
    ok(cli(&a, &["deploy", v1.path().to_str().unwrap()]));
    let deployed = started.elapsed();
    for node in [&a, &b, &c] {
        until(node, "/", (200, "one"));
    }
    eprintln!(
        "deploy through A: {} ms; all three serving {} ms after it began",
        deployed.as_millis(),
        started.elapsed().as_millis()
    );

    // A secret set through B reaches every node's env.
    let mut put = taipan()
        .args(["secret", "put", "TOKEN", "--name", "app"])
        .args(["--server", &b.admin, "--token", TOKEN])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    put.stdin.take().unwrap().write_all(b"s3cr3t\n").unwrap();
    assert!(put.wait_with_output().unwrap().status.success());
    for node in [&a, &b, &c] {
        until(node, "/secret", (200, "s3cr3t"));
    }

    // KV written through one node reads through the others.
    assert_eq!(
        get(&b, "/put?k=greeting&v=hello").unwrap(),
        (200, "ok".into())
    );
    assert_eq!(get(&c, "/get?k=greeting").unwrap(), (200, "hello".into()));
    assert_eq!(get(&a, "/get?k=greeting").unwrap(), (200, "hello".into()));

    // A Durable Object has one home, whichever node a call reaches; a D1
    // database too.
    for (i, node) in [&a, &b, &c, &a].into_iter().enumerate() {
        assert_eq!(
            get(node, "/inc?name=one").unwrap(),
            (200, (i + 1).to_string()),
            "{}",
            node.output()
        );
    }
    // A room's WebSockets live on its owner (A, which the first join
    // reached); members joining through B and C are relayed there, and
    // everyone hears everyone.
    let mut alice = join(&a, "alice");
    assert_eq!(said(&mut alice, &a), "joined alice");
    let mut bob = join(&b, "bob");
    assert_eq!(said(&mut alice, &a), "joined bob");
    assert_eq!(said(&mut bob, &b), "joined bob");
    let mut carol = join(&c, "carol");
    for (socket, node) in [(&mut alice, &a), (&mut bob, &b), (&mut carol, &c)] {
        assert_eq!(said(socket, node), "joined carol");
    }
    bob.send(tungstenite::Message::text("hi from b")).unwrap();
    for (socket, node) in [(&mut alice, &a), (&mut bob, &b), (&mut carol, &c)] {
        assert_eq!(said(socket, node), "bob: hi from b");
    }
    carol.send(tungstenite::Message::text("hi from c")).unwrap();
    for (socket, node) in [(&mut alice, &a), (&mut bob, &b), (&mut carol, &c)] {
        assert_eq!(said(socket, node), "carol: hi from c");
    }
    bob.close(None).unwrap();
    assert_eq!(said(&mut alice, &a), "left bob");
    assert_eq!(said(&mut carol, &c), "left bob");
    drop((alice, carol));

    assert_eq!(get(&b, "/d1/add?v=first").unwrap(), (200, "ok".into()));
    for node in [&a, &b, &c] {
        assert_eq!(get(node, "/d1/count").unwrap(), (200, "1".into()));
    }

    // A workflow instance created through B is run by whichever node
    // claims it, seen through C, and woken by an event sent through A.
    assert_eq!(
        get(&b, "/flow/create?id=w1&who=ann").unwrap(),
        (200, "w1".into())
    );
    until(&c, "/flow/status?id=w1", (200, "waiting"));
    assert_eq!(
        get(&a, "/flow/event?id=w1&by=a").unwrap(),
        (200, "sent".into())
    );
    until(&c, "/flow/status?id=w1", (200, "complete hello ann via a"));

    // An alarm set through B fires once in the cluster (every node looks
    // at the schedule; the one that claims it runs it in the object's
    // owner), read through C; it stays at one a few polls later.
    assert_eq!(
        get(&b, "/alarm?name=ticker&in=1000").unwrap(),
        (200, "armed".into())
    );
    let took = until(&c, "/fired?name=ticker", (200, "1"));
    eprintln!("an alarm set 1 s ahead fired {} ms after", took.as_millis());
    std::thread::sleep(Duration::from_secs(3));
    for node in [&a, &b, &c] {
        assert_eq!(get(node, "/fired?name=ticker").unwrap(), (200, "1".into()));
    }

    // Two deploys of one worker at once, through two nodes: one goes on,
    // the other is refused with 409; nothing half-applied.
    let (d1, d2) = (app("two-a"), app("two-b"));
    let (out1, out2) = std::thread::scope(|s| {
        let first = s.spawn(|| cli(&a, &["deploy", d1.path().to_str().unwrap()]));
        let second = s.spawn(|| cli(&b, &["deploy", d2.path().to_str().unwrap()]));
        (first.join().unwrap(), second.join().unwrap())
    });
    let mut winners = Vec::new();
    for (out, body) in [(&out1, "two-a"), (&out2, "two-b")] {
        let text = text_of(out);
        if out.status.success() {
            winners.push(body);
        } else {
            assert!(text.contains("in progress"), "{text}");
        }
    }
    // Started together, each building for seconds: exactly one goes on.
    assert_eq!(winners.len(), 1, "{}\n{}", text_of(&out1), text_of(&out2));
    let versions = ok(cli(&c, &["versions", "--name", "app"]));
    assert_eq!(
        versions
            .lines()
            .filter(|l| l.starts_with('v') && l[1..].starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        1 + winners.len(),
        "{versions}\n{}\n{}",
        text_of(&out1),
        text_of(&out2)
    );
    let serving = winners[0];
    for node in [&a, &b, &c] {
        until(node, "/", (200, serving));
    }

    // A bounded write loop across the three nodes; A is killed (SIGKILL)
    // in the middle, a deploy goes through B meanwhile; every write that
    // was acknowledged must survive.
    let mut acknowledged = BTreeMap::new();
    let mut refused = 0;
    // Writes to the object and the database: 4 and 1 made before.
    let (mut incs, mut rows) = (Writes::new(4), Writes::new(1));
    let v3 = app("three");
    for i in 0..150 {
        if i == 50 {
            let _ = a.child_kill();
        }
        if i == 75 {
            ok(cli(&b, &["deploy", v3.path().to_str().unwrap()]));
        }
        let node = [&a, &b, &c][i % 3];
        let key = format!("w{i}");
        match get(node, &format!("/put?k={key}&v={i}")) {
            Some((200, body)) if body == "ok" => {
                acknowledged.insert(key, i.to_string());
            }
            _ => refused += 1,
        }
        if i % 5 == 0 {
            let node = [&b, &c][i / 5 % 2];
            incs.tried += 1;
            if get(node, "/inc?name=one").is_some_and(|(s, _)| s == 200) {
                incs.acknowledged += 1;
            }
            rows.tried += 1;
            if get(node, &format!("/d1/add?v=r{i}")).is_some_and(|(s, _)| s == 200) {
                rows.acknowledged += 1;
            }
        }
    }
    // What A held moves once its leases expire: keep writing through C
    // until the object and the database answer again (bounded).
    let started = Instant::now();
    loop {
        incs.tried += 1;
        let inc = get(&c, "/inc?name=one").is_some_and(|(s, _)| s == 200);
        incs.acknowledged += usize::from(inc);
        rows.tried += 1;
        let row = get(&c, &format!("/d1/add?v=after{}", rows.tried)).is_some_and(|(s, _)| s == 200);
        rows.acknowledged += usize::from(row);
        if inc && row {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "A's object never moved"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "after SIGKILL: object and database served by another node {} ms later",
        started.elapsed().as_millis()
    );
    assert!(acknowledged.len() >= 100, "{}", acknowledged.len());
    assert!(
        refused >= 30,
        "writes to the killed node cannot succeed: {refused}"
    );
    until(&c, "/", (200, "three"));

    // A comes back on its data dir, catches up, and every write is there.
    drop(a);
    let a = cluster.node(dirs[0].path());
    until(&a, "/", (200, "three"));
    for (key, value) in &acknowledged {
        assert_eq!(
            get(&a, &format!("/get?k={key}")).unwrap(),
            (200, value.clone()),
            "{key}"
        );
    }
    let nodes = ok(cli(&a, &["nodes"]));
    assert_eq!(nodes.matches(" live ").count(), 3, "{nodes}");
    // Every acknowledged increment and row is there (an unacknowledged
    // one may be too: it can fail after its commit was saved).
    let count = |path: &str| -> usize { get(&a, path).unwrap().1.parse().unwrap() };
    let n = count("/inc?name=one") - 1;
    assert!(
        (incs.acknowledged..=incs.tried).contains(&n),
        "{n} {incs:?}"
    );
    let n = count("/d1/count");
    assert!(
        (rows.acknowledged..=rows.tried).contains(&n),
        "{n} {rows:?}"
    );

    // Rollback through C, delete through A: every node follows.
    ok(cli(&c, &["rollback", "v1", "--name", "app"]));
    for node in [&a, &b, &c] {
        until(node, "/", (200, "one"));
    }
    ok(cli(&a, &["delete", "--name", "app"]));
    for node in [&a, &b, &c] {
        until(
            node,
            "/",
            (404, "no worker is routed for this host and path\n"),
        );
    }
}

/// Writes sent, and those answered 200.
#[derive(Debug)]
struct Writes {
    tried: usize,
    acknowledged: usize,
}

impl Writes {
    fn new(done: usize) -> Writes {
        Writes {
            tried: done,
            acknowledged: done,
        }
    }
}
