//! Faults a real engine cannot be made to produce on demand, played by a fake engine on a unix
//! socket: malformed answers, a socket that hangs mid-body or mid-frame, an engine too old, a
//! version change under a running client, keep-alive connections closed between calls. Each must
//! end in a typed error (Protocol, Timeout, Cancelled, UnsupportedApiVersion), never a panic or
//! a hang.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake::{frame, json, ping, FakeEngine, Reply};
use herdctl_container::engine::{Engine, EngineOptions, ExecSpec, Host, Stream};
use herdctl_container::Error;

fn engine(fake: &FakeEngine, call_timeout: Duration) -> Engine {
    Engine::with_options(EngineOptions {
        host: Host::Unix(fake.path.clone()),
        call_timeout,
        ..EngineOptions::default()
    })
    .unwrap()
}

/// A fake that answers pings as API 1.41 and everything else with `reply`.
fn fake_with(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FakeEngine {
    FakeEngine::start(move |req| {
        if req.path == "/_ping" {
            Reply::Bytes(ping("1.41"))
        } else {
            reply(&req.path)
        }
    })
}

#[test]
fn malformed_answers_are_protocol_errors_naming_the_call() {
    let cases: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{\"a\"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!",
    ];
    for bytes in cases {
        let fake = fake_with(move |_| Reply::Close(bytes.to_vec()));
        let err = engine(&fake, Duration::from_secs(5)).info().unwrap_err();
        assert!(
            matches!(err, Error::Protocol { .. }),
            "{}: {err:?}",
            String::from_utf8_lossy(bytes)
        );
        assert!(
            err.to_string().starts_with("GET /info: protocol error: "),
            "{err}"
        );
    }
}

#[test]
fn an_engine_that_hangs_mid_body_times_out_at_the_call_deadline() {
    let fake = fake_with(|_| {
        Reply::Hang(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Name\":".to_vec())
    });
    let engine = engine(&fake, Duration::from_millis(300));
    let start = Instant::now();
    let err = engine.info().unwrap_err();
    assert_eq!(err.to_string(), "GET /info timed out after 300ms");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// An exec whose start answer is `101` followed by `then`, after which the fake hangs.
fn exec_fake(then: Vec<u8>) -> FakeEngine {
    fake_with(move |path| {
        if path.ends_with("/exec") {
            Reply::Bytes(json(201, r#"{"Id":"fakeexec"}"#))
        } else {
            let mut bytes = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n".to_vec();
            bytes.extend_from_slice(&then);
            Reply::Hang(bytes)
        }
    })
}

#[test]
fn exec_output_hanging_mid_frame_hits_the_idle_timeout() {
    let mut then = frame(1, b"hello ");
    then.extend_from_slice(&frame(1, b"world")[..9]); // a header and one byte of its payload
    let fake = exec_fake(then);
    let engine = engine(&fake, Duration::from_secs(5));
    let id = engine
        .exec_create("fake", &ExecSpec::new(["true"]))
        .unwrap();
    let (_input, mut output) = engine.exec_start(&id).unwrap().split().unwrap();
    output
        .set_idle_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert_eq!(
        output.next_chunk().unwrap(),
        Some((Stream::Stdout, &b"hello "[..]))
    );
    assert_eq!(
        output.next_chunk().unwrap(),
        Some((Stream::Stdout, &b"w"[..]))
    );
    let err = output.next_chunk().unwrap_err();
    assert_eq!(err.code(), "TIMEOUT", "{err}");
    assert_eq!(
        err.to_string(),
        "exec fakeexec: waiting for output timed out after 200ms"
    );
}

#[test]
fn abort_unblocks_a_reader_stuck_mid_frame() {
    let fake = exec_fake(frame(2, b"partial")[..10].to_vec());
    let engine = engine(&fake, Duration::from_secs(5));
    let id = engine
        .exec_create("fake", &ExecSpec::new(["true"]))
        .unwrap();
    let (_input, mut output) = engine.exec_start(&id).unwrap().split().unwrap();
    let abort = output.abort_handle().unwrap();
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        abort.abort();
    });
    let start = Instant::now();
    assert_eq!(
        output.next_chunk().unwrap(),
        Some((Stream::Stderr, &b"pa"[..]))
    );
    let err = output.next_chunk().unwrap_err();
    assert_eq!(err.code(), "CANCELLED", "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    aborter.join().unwrap();
}

#[test]
fn exec_stream_garbage_or_truncation_is_a_protocol_error() {
    // Stream id 9 does not exist: a TTY stream read as multiplexed looks like this.
    let fake = fake_with(|path| {
        if path.ends_with("/exec") {
            Reply::Bytes(json(201, r#"{"Id":"x1"}"#))
        } else {
            Reply::Close(b"HTTP/1.1 101 UPGRADED\r\n\r\n\x09\x00\x00\x00\x00\x00\x00\x01z".to_vec())
        }
    });
    let engine = engine(&fake, Duration::from_secs(5));
    let (_i, mut output) = engine.exec_start("x1").unwrap().split().unwrap();
    let err = output.next_chunk().unwrap_err();
    assert!(
        err.to_string()
            .contains("protocol error: frame header names stream 9"),
        "{err}"
    );

    // The engine closes inside a frame.
    let fake = fake_with(|_| {
        Reply::Close(
            [
                &b"HTTP/1.1 101 UPGRADED\r\n\r\n"[..],
                &frame(1, b"abcdef")[..11],
            ]
            .concat(),
        )
    });
    let engine = engine_for(&fake);
    let (_i, mut output) = engine.exec_start("x1").unwrap().split().unwrap();
    assert_eq!(
        output.next_chunk().unwrap(),
        Some((Stream::Stdout, &b"abc"[..]))
    );
    let err = output.next_chunk().unwrap_err();
    assert_eq!(
        err.to_string(),
        "exec x1: protocol error: the stream ended inside a frame"
    );
}

fn engine_for(fake: &FakeEngine) -> Engine {
    engine(fake, Duration::from_secs(5))
}

#[test]
fn an_engine_older_than_our_range_is_refused_with_both_ranges() {
    let fake = FakeEngine::start(|req| match req.path.as_str() {
        "/_ping" => Reply::Bytes(ping("1.24")),
        "/version" => Reply::Bytes(json(
            200,
            r#"{"Version":"1.13.1","ApiVersion":"1.24","MinAPIVersion":"1.12"}"#,
        )),
        _ => Reply::Close(json(500, r#"{"message":"unexpected"}"#)),
    });
    let err = Engine::unix(&fake.path).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the engine speaks API 1.12..=1.24 and this library 1.41..=1.47; upgrade whichever is older"
    );
}

#[test]
fn a_version_rejected_after_an_engine_downgrade_is_renegotiated_once() {
    // The engine first says 1.47; then it "is downgraded": it rejects /v1.47 and pings as 1.43.
    let pings = Arc::new(AtomicUsize::new(0));
    let p = pings.clone();
    let fake = FakeEngine::start(move |req| match req.path.as_str() {
        "/_ping" => {
            let first = p.fetch_add(1, Ordering::SeqCst) == 0;
            Reply::Bytes(ping(if first { "1.47" } else { "1.43" }))
        }
        "/v1.47/info" => Reply::Bytes(json(
            400,
            r#"{"message":"client version 1.47 is too new. Maximum supported API version is 1.43"}"#,
        )),
        "/v1.43/info" => Reply::Bytes(json(200, r#"{"Name":"fakehost","OSType":"linux"}"#)),
        other => Reply::Close(json(404, &format!(r#"{{"message":"no route {other}"}}"#))),
    });
    let engine = Engine::unix(&fake.path).unwrap();
    assert_eq!(engine.api_version(), "1.47");
    assert_eq!(engine.info().unwrap().name, "fakehost");
    assert_eq!(engine.api_version(), "1.43");
    assert_eq!(pings.load(Ordering::SeqCst), 2);
}

#[test]
fn a_version_rejected_again_after_renegotiating_fails_with_both_ranges() {
    let fake = FakeEngine::start(|req| {
        match req.path.as_str() {
        "/_ping" => Reply::Bytes(ping("1.45")),
        "/version" => Reply::Bytes(json(200, r#"{"ApiVersion":"1.45","MinAPIVersion":"1.46"}"#)),
        _ => Reply::Bytes(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 85\r\n\r\nclient version 1.45 is too old. Minimum supported API version is 1.46, please upgrade"
                .to_vec(),
        ),
    }
    });
    let err = Engine::unix(&fake.path).unwrap().info().unwrap_err();
    assert_eq!(err.code(), "API_VERSION");
    assert!(
        err.to_string()
            .contains("API 1.46..=1.45 and this library 1.41..=1.47"),
        "{err}"
    );
}

#[test]
fn keep_alive_reuses_one_connection_and_survives_the_engine_closing_it() {
    let fake = fake_with(|_| Reply::Bytes(json(200, r#"{"Name":"n"}"#)));
    let engine = engine_for(&fake);
    for _ in 0..5 {
        engine.info().unwrap();
    }
    assert_eq!(
        fake.connections.load(Ordering::SeqCst),
        1,
        "ping and five calls on one connection"
    );

    // An engine that closes every connection after answering, although it did not say so:
    // the pooled connection is found dead and replaced, and no call fails.
    let fake = FakeEngine::start(|req| match req.path.as_str() {
        "/_ping" => Reply::Close(ping("1.41")),
        _ => Reply::Close(json(200, r#"{"Name":"n"}"#)),
    });
    let engine = engine_for(&fake);
    for _ in 0..3 {
        assert_eq!(engine.info().unwrap().name, "n");
    }
    assert_eq!(fake.connections.load(Ordering::SeqCst), 4);
}

#[test]
fn an_in_band_pull_error_fails_the_pull_naming_the_image() {
    // A real engine does this too, but only for a registry that fails mid-pull.
    let body = "{\"status\":\"Pulling from x\",\"id\":\"latest\"}\r\n{\"errorDetail\":{\"message\":\"manifest unknown\"},\"error\":\"manifest unknown\"}\r\n";
    let fake = fake_with(move |_| Reply::Bytes(json(200, body)));
    let mut seen = Vec::new();
    let err = engine_for(&fake)
        .image_pull("127.0.0.1:5000/x", &mut |p| seen.push(p.status.clone()))
        .unwrap_err();
    assert_eq!(seen, vec!["Pulling from x"]);
    assert_eq!(
        err.to_string(),
        "pull image 127.0.0.1:5000/x: the engine answered 200: manifest unknown"
    );
}

#[test]
fn a_tcp_engine_speaks_the_same_http() {
    // The real engine here listens on its unix socket only; this fake proves the tcp:// path.
    let addr = common::fake::start_tcp(|req| match req.path.as_str() {
        "/_ping" => Reply::Bytes(ping("1.44")),
        "/v1.44/info" => Reply::Bytes(json(200, r#"{"Name":"over-tcp"}"#)),
        _ => Reply::Close(json(404, "{}")),
    });
    let host = Host::parse(&format!("tcp://{addr}")).unwrap();
    let engine = Engine::with_options(EngineOptions {
        host,
        ..EngineOptions::default()
    })
    .unwrap();
    assert_eq!(engine.api_version(), "1.44");
    assert_eq!(engine.info().unwrap().name, "over-tcp");
}
