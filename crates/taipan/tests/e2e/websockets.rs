//! WebSockets end to end, with a real client (tungstenite) against the real
//! binary: the echo example (a worker's own socket, its listener's closure
//! kept across messages), a chat room of three clients through a
//! hibernating Durable Object, and a Starlette WebSocket route.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::harness::{Server, example_copy, repo_root};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(server: &Server, path: &str) -> Socket {
    let url = format!("{}{path}", server.url.replacen("http://", "ws://", 1));
    let (socket, response) = tungstenite::connect(&url)
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}\n{}", server.output()));
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
    socket
}

/// The next data message (pings and pongs skipped).
fn next(socket: &mut Socket, server: &Server) -> Message {
    loop {
        match socket.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(message) => return message,
            Err(e) => panic!("reading: {e}\n{}", server.output()),
        }
    }
}

fn text(socket: &mut Socket, server: &Server) -> String {
    match next(socket, server) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}\n{}", server.output()),
    }
}

fn event(socket: &mut Socket, server: &Server) -> Value {
    let text = text(socket, server);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn send(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).unwrap();
}

#[test]
fn echo_keeps_its_listener_and_closes_with_the_workers_code() {
    let dir = example_copy("websocket");
    let server = Server::dev(dir.path(), &["--no-watch"]);
    // A plain request is answered by the worker (no upgrade).
    let (status, body) = server.text("/");
    assert_eq!(
        (status, body.as_str()),
        (426, "Expected Upgrade: websocket\n")
    );

    let mut a = connect(&server, "/");
    let mut b = connect(&server, "/");
    assert_eq!(text(&mut a, &server), "welcome");
    assert_eq!(text(&mut b, &server), "welcome");
    send(&mut a, "hi");
    assert_eq!(text(&mut a, &server), "1: hi");
    send(&mut a, "there");
    send(&mut b, "other");
    // Each socket has its own listener, its count kept between messages.
    assert_eq!(text(&mut a, &server), "2: there");
    assert_eq!(text(&mut b, &server), "1: other");
    a.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(next(&mut a, &server), Message::binary(vec![3u8, 2, 1]));
    // Messages keep their order under a burst.
    for i in 0..50 {
        send(&mut b, &format!("m{i}"));
    }
    for i in 0..50 {
        assert_eq!(text(&mut b, &server), format!("{}: m{i}", i + 2));
    }
    send(&mut a, "close");
    match next(&mut a, &server) {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::from(4000));
            assert_eq!(frame.reason.as_str(), "closed after 4 messages");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // A message over websocket_max_message (1 MiB) closes with 1009.
    b.send(Message::binary(vec![0u8; (1 << 20) + 1])).unwrap();
    match next(&mut b, &server) {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    // The server is still fine for new sockets.
    let mut c = connect(&server, "/");
    assert_eq!(text(&mut c, &server), "welcome");
    send(&mut c, "again");
    assert_eq!(text(&mut c, &server), "1: again");
}

/// Wait until `check` holds, up to `timeout`.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_chat_room_of_three_hibernates_and_wakes_with_its_sockets() {
    let dir = example_copy("chat");
    let config = dir.path().join("wrangler.toml");
    let text_of = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text_of}\n[limits]\nwebsocket_hibernate_ms = 300\n"),
    )
    .unwrap();
    let server = Server::dev(dir.path(), &["--no-watch"]);
    let stats = |server: &Server| -> Value {
        let (status, body) = server.text("/rooms/lobby/stats");
        assert_eq!(status, 200, "{body}\n{}", server.output());
        serde_json::from_str(&body).unwrap()
    };

    let mut alice = connect(&server, "/rooms/lobby?name=alice");
    assert_eq!(event(&mut alice, &server), json!({"joined": "alice"}));
    let mut bob = connect(&server, "/rooms/lobby?name=bob");
    assert_eq!(event(&mut alice, &server), json!({"joined": "bob"}));
    assert_eq!(event(&mut bob, &server), json!({"joined": "bob"}));
    let mut carol = connect(&server, "/rooms/lobby?name=carol");
    for socket in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(event(socket, &server), json!({"joined": "carol"}));
    }

    // Everyone sees every message, in one order.
    send(&mut alice, "hello");
    send(&mut bob, "hi alice");
    send(&mut carol, "hey");
    send(&mut bob, "bye soon");
    let seen: Vec<Vec<Value>> = [&mut alice, &mut bob, &mut carol]
        .into_iter()
        .map(|s| (0..4).map(|_| event(s, &server)).collect())
        .collect();
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    let from = |who: &str| seen[0].iter().filter(|e| e["from"] == who).count();
    assert_eq!((from("alice"), from("bob"), from("carol")), (1, 2, 1));
    let bob_said: Vec<&Value> = seen[0].iter().filter(|e| e["from"] == "bob").collect();
    assert_eq!(
        bob_said[0]["text"], "hi alice",
        "one sender's order is kept"
    );
    assert_eq!(bob_said[1]["text"], "bye soon");
    let before = stats(&server);
    assert_eq!(before["wakes"], 1);
    assert_eq!(before["in_memory"], 4);
    assert_eq!(before["members"], json!(["alice", "bob", "carol"]));

    // Idle past websocket_hibernate_after (300 ms here): the object
    // leaves memory.
    std::thread::sleep(Duration::from_millis(1500));
    // The automatic reply comes from the host, without waking the object.
    send(&mut alice, "ping");
    assert_eq!(text(&mut alice, &server), "pong");
    // The next message wakes a rebuilt object; the sockets were kept.
    send(&mut carol, "still here?");
    for socket in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(
            event(socket, &server),
            json!({"from": "carol", "text": "still here?"})
        );
    }
    let after = stats(&server);
    assert_eq!(after["wakes"], 2, "woken once more: {after}");
    assert_eq!(after["in_memory"], 1, "memory started again: {after}");
    assert_eq!(after["members"], json!(["alice", "bob", "carol"]));

    // A member leaving is announced to the others.
    bob.close(None).unwrap();
    assert_eq!(event(&mut alice, &server), json!({"left": "bob"}));
    assert_eq!(event(&mut carol, &server), json!({"left": "bob"}));
    assert!(eventually(
        Duration::from_secs(5),
        || stats(&server)["members"] == json!(["alice", "carol"])
    ));
}

#[test]
fn a_starlette_websocket_route() {
    let dir = example_copy("starlette");
    let wheelhouse = repo_root().join("testdata/wheelhouse");
    let wheelhouse = wheelhouse.to_string_lossy();
    let server = Server::dev(
        dir.path(),
        &["--no-watch", "--no-index", "--find-links", &wheelhouse],
    );
    let mut socket = connect(&server, "/ws?name=taipan");
    assert_eq!(text(&mut socket, &server), "hello taipan");
    send(&mut socket, "abc");
    assert_eq!(text(&mut socket, &server), "cba");
    send(&mut socket, "racecar!");
    assert_eq!(text(&mut socket, &server), "!racecar");
    send(&mut socket, "bye");
    match next(&mut socket, &server) {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::from(4001)),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // Plain HTTP routes of the same app still work.
    let (status, _) = server.text("/?name=x");
    assert_eq!(status, 200);
}

/// A WebSocket echo server on loopback ("echo: <text>"), one thread per
/// connection.
fn upstream_echo() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut socket) = tungstenite::accept(stream) else {
                    return;
                };
                while let Ok(message) = socket.read() {
                    match message {
                        Message::Text(text)
                            if socket.send(Message::text(format!("echo: {text}"))).is_err() =>
                        {
                            return;
                        }
                        Message::Close(_) => return,
                        _ => {}
                    }
                }
            });
        }
    });
    format!("ws://{address}")
}

const OUTBOUND_WORKER: &str = r#"
from urllib.parse import parse_qs, urlsplit

from js import Response, fetch
from workers import WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlsplit(request.url)
        if url.path == "/open":
            target = parse_qs(url.query)["to"][0]
            try:
                response = await fetch(target, headers={"Upgrade": "websocket"})
            except Exception as e:
                return Response(f"failed: {e}", status=502)
            ws = response.webSocket
            ws.accept()
            env = self.env

            async def on_message(event):
                await env.SEEN.put("last", event.data)
                if event.data == "echo: one":
                    ws.send("two")

            ws.addEventListener("message", on_message)
            ws.send("one")
            return Response(f"{response.status} {ws.url}")
        return Response(await self.env.SEEN.get("last") or "")
"#;

#[test]
fn an_outbound_websocket_through_fetch_delivers_its_messages_as_events() {
    let upstream = upstream_echo();
    let config = format!(
        "{}\n[[kv_namespaces]]\nbinding = \"SEEN\"\nid = \"seen\"\n",
        crate::harness::CONFIG
    );
    let dir = crate::harness::project(&[
        ("wrangler.toml", &config),
        ("src/entry.py", OUTBOUND_WORKER),
    ]);
    let server = Server::dev(dir.path(), &["--no-watch"]);
    // Workers write http(s):// URLs for WebSockets; ws:// works too.
    let upstream = upstream.replacen("ws://", "http://", 1);
    let (status, body) = server.text(&format!("/open?to={upstream}/feed"));
    assert_eq!(status, 200, "{body}\n{}", server.output());
    assert_eq!(body, format!("101 {upstream}/feed"));
    // The echo of "one" makes the listener send "two"; each echo is stored.
    assert!(
        eventually(Duration::from_secs(20), || server.text("/seen").1
            == "echo: two"),
        "last seen: {:?}\n{}",
        server.text("/seen"),
        server.output()
    );
    // Nothing listens there: fetch raises, and the worker says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (status, body) = server.text(&format!("/open?to=ws://127.0.0.1:{port}/"));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("WebSocket connection to"), "{body}");
}

#[test]
fn websockets_under_serve_route_by_host() {
    use tungstenite::client::IntoClientRequest;

    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--insecure-local"]);
    let dir = example_copy("websocket");
    crate::harness::deploy_ok(&server, dir.path());
    let url = format!("{}/", server.url.replacen("http://", "ws://", 1));
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("host", "websocket-example.localhost".parse().unwrap());
    let (mut socket, response) =
        tungstenite::connect(request).unwrap_or_else(|e| panic!("{e}\n{}", server.output()));
    assert_eq!(response.status(), 101);
    assert_eq!(text(&mut socket, &server), "welcome");
    send(&mut socket, "served");
    assert_eq!(text(&mut socket, &server), "1: served");
    socket.close(None).unwrap();
}

/// A worker that hands the upgrade to another through a service binding:
/// the client ends up on the socket the other worker accepted.
#[test]
fn an_upgrade_passes_through_a_service_binding() {
    let echo = example_copy("websocket");
    let front_config = crate::harness::CONFIG.replace("name = \"t\"", "name = \"front\"")
        + "\n[[services]]\nbinding = \"ECHO\"\nservice = \"websocket-example\"\n";
    let front = crate::harness::project(&[
        ("wrangler.toml", &front_config),
        (
            "src/entry.py",
            "from workers import WorkerEntrypoint\n\n\nclass Default(WorkerEntrypoint):\n    async def fetch(self, request):\n        return await self.env.ECHO.fetch(request)\n",
        ),
    ]);
    let front_toml = front.path().join("wrangler.toml");
    let echo_toml = echo.path().join("wrangler.toml");
    let server = Server::dev(
        front.path(),
        &[
            "--no-watch",
            "-c",
            front_toml.to_str().unwrap(),
            "-c",
            echo_toml.to_str().unwrap(),
        ],
    );
    // A plain request: the echo worker's own 426.
    assert_eq!(server.text("/").0, 426);
    let mut socket = connect(&server, "/");
    assert_eq!(text(&mut socket, &server), "welcome");
    send(&mut socket, "via front");
    assert_eq!(text(&mut socket, &server), "1: via front");
}
