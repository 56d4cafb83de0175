//! Exec against the real engine: stdin in and output out concurrently, streams kept apart,
//! half-close, exit codes (never a made-up 0), abort and idle timeout.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Live;
use herdctl_container::engine::{ExecSpec, Stream};
use herdctl_container::Error;

#[test]
fn one_mib_of_stdin_reaches_wc() {
    let live = Live::new();
    let c = live.container().start();
    let out = live.exec(&c, &["wc", "-c"], &vec![b'x'; 1 << 20]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576");
    assert_eq!((out.stderr.as_slice(), out.exit_code), (&b""[..], 0));
}

#[test]
fn five_mb_of_stdout_arrive_whole_and_in_order() {
    let live = Live::new();
    let c = live.container().start();
    let expected: String = (1..=800_000).map(|i| format!("{i}\n")).collect();
    assert!(expected.len() > 5_000_000);
    let start = Instant::now();
    let out = live.exec(&c, &["seq", "1", "800000"], b"");
    let took = start.elapsed();
    assert_eq!(out.stdout.len(), expected.len());
    assert!(
        out.stdout == expected.as_bytes(),
        "stdout differs from seq's output"
    );
    assert_eq!(out.exit_code, 0);
    eprintln!(
        "5 MB exec stdout in {took:?} ({:.0} MB/s)",
        expected.len() as f64 / took.as_secs_f64() / 1e6
    );
}

#[test]
fn stdout_and_stderr_stay_apart_with_a_jsonl_line_split_across_frames() {
    let live = Live::new();
    let c = live.container().start();
    // Three writes with pauses, so the engine reads (and frames) them apart; the JSON line on
    // stdout spans two frames, with a stderr frame between them.
    let script = r#"printf '{"type":"sys'; sleep 0.2; printf 'a warning\n' >&2; sleep 0.2; printf 'tem"}\n'"#;
    let id = live
        .engine
        .exec_create(&c, &ExecSpec::new(["sh", "-c", script]))
        .unwrap();
    let (_input, mut output) = live.engine.exec_start(&id).unwrap().split().unwrap();
    let mut chunks = Vec::new();
    while let Some((stream, bytes)) = output.next_chunk().unwrap() {
        chunks.push((stream, String::from_utf8(bytes.to_vec()).unwrap()));
    }
    assert_eq!(
        chunks,
        vec![
            (Stream::Stdout, r#"{"type":"sys"#.to_string()),
            (Stream::Stderr, "a warning\n".to_string()),
            (Stream::Stdout, "tem\"}\n".to_string()),
        ]
    );
    assert_eq!(
        live.engine
            .exec_exit_code(&id, Duration::from_secs(10))
            .unwrap(),
        0
    );
}

#[test]
fn exit_codes_are_reported_as_the_process_ended() {
    let live = Live::new();
    let c = live.container().start();
    assert_eq!(live.exec(&c, &["true"], b"").exit_code, 0);
    assert_eq!(live.exec(&c, &["sh", "-c", "exit 3"], b"").exit_code, 3);
    let missing = live.exec(&c, &["sh", "-c", "no-such-command"], b"");
    assert_eq!(missing.exit_code, 127);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    // Without a shell in between, the engine itself cannot start the program.
    let direct = live.exec(&c, &["/no/such/binary"], b"");
    assert!(
        direct.exit_code == 126 || direct.exit_code == 127,
        "{direct:?}"
    );
}

#[test]
fn half_close_is_eof_for_cat_while_output_keeps_flowing() {
    let live = Live::new();
    let c = live.container().start();
    let spec = ExecSpec::new(["sh", "-c", "cat; echo after-eof; echo done >&2"]).stdin(true);
    let id = live.engine.exec_create(&c, &spec).unwrap();
    let (mut input, mut output) = live.engine.exec_start(&id).unwrap().split().unwrap();
    input.write_all(b"ping\n").unwrap();
    // cat echoes before it has seen EOF: the stream is live both ways.
    assert_eq!(
        output.next_chunk().unwrap(),
        Some((Stream::Stdout, &b"ping\n"[..]))
    );
    input.close().unwrap();
    let (out, err) = output.read_to_end().unwrap();
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"after-eof\n"[..], &b"done\n"[..])
    );
    assert_eq!(
        live.engine
            .exec_exit_code(&id, Duration::from_secs(10))
            .unwrap(),
        0
    );
}

#[test]
fn eight_mib_through_cat_does_not_deadlock() {
    // cat writes output before it has read all input: one thread doing both would block forever
    // once the socket buffers fill.
    let live = Live::new();
    let c = live.container().start();
    let input: Vec<u8> = (0..8 << 20).map(|i: u32| b'a' + (i % 26) as u8).collect();
    let out = live.exec(&c, &["cat"], &input);
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input);
}

#[test]
fn an_unknown_exit_code_is_none_never_zero() {
    let live = Live::new();
    let c = live.container().start();
    let id = live
        .engine
        .exec_create(&c, &ExecSpec::new(["sh", "-c", "sleep 3; exit 5"]))
        .unwrap();
    let before = live.engine.exec_inspect(&id).unwrap();
    assert_eq!(
        (before.running, before.exit_code),
        (false, None),
        "created, not started"
    );
    let (_input, mut output) = live.engine.exec_start(&id).unwrap().split().unwrap();
    // dockerd answers the attach before it starts the process: wait for it to run.
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    let during = loop {
        let now = live.engine.exec_inspect(&id).unwrap();
        if now.running || std::time::Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(during.running, "{during:?}");
    assert_eq!(during.exit_code, None, "running: not known yet");
    assert_eq!(output.read_to_end().unwrap(), (Vec::new(), Vec::new()));
    assert_eq!(
        live.engine
            .exec_exit_code(&id, Duration::from_secs(10))
            .unwrap(),
        5
    );
}

#[test]
fn env_user_and_working_dir_apply_to_the_exec_only() {
    let live = Live::new();
    let c = live.container().start();
    let spec = ExecSpec::new(["sh", "-c", "echo $HERDCTL_X; id -u; pwd"])
        .env("HERDCTL_X=per-exec")
        .user("1000")
        .working_dir("/tmp");
    let out = live.engine.exec_run(&c, &spec, b"").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "per-exec\n1000\n/tmp\n"
    );
    let env = live.engine.inspect_container(&c).unwrap().config.env;
    assert!(env.iter().all(|e| !e.starts_with("HERDCTL_X")), "{env:?}");
}

#[test]
fn abort_returns_a_blocked_reader_promptly() {
    let live = Live::new();
    let c = live.container().start();
    let id = live
        .engine
        .exec_create(&c, &ExecSpec::new(["sleep", "30"]))
        .unwrap();
    let stream = live.engine.exec_start(&id).unwrap();
    let abort = stream.abort_handle().unwrap();
    let (_input, mut output) = stream.split().unwrap();
    let start = Instant::now();
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        abort.abort();
    });
    let err = output.next_chunk().unwrap_err();
    assert!(matches!(err, Error::Cancelled(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    aborter.join().unwrap();
}

#[test]
fn an_idle_timeout_is_only_what_the_caller_asked_for() {
    let live = Live::new();
    let c = live.container().start();
    let id = live
        .engine
        .exec_create(&c, &ExecSpec::new(["sh", "-c", "echo first; sleep 30"]))
        .unwrap();
    let (_input, mut output) = live.engine.exec_start(&id).unwrap().split().unwrap();
    assert_eq!(
        output.next_chunk().unwrap(),
        Some((Stream::Stdout, &b"first\n"[..]))
    );
    output
        .set_idle_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = output.next_chunk().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("exec {id}: waiting for output timed out after 300ms")
    );
}

#[test]
fn exec_errors_name_what_is_wrong() {
    let live = Live::new();
    let c = live.container().create(); // created, not running
    let err = live
        .engine
        .exec_create(&c, &ExecSpec::new(["true"]))
        .unwrap_err();
    assert_eq!(err.code(), "CONFLICT", "{err}");
    assert!(err.to_string().contains("is not running"), "{err}");
    let err = live.engine.exec_start("0123456789abcdef").unwrap_err();
    assert!(
        matches!(err, Error::NotFound { kind: "exec", .. }),
        "{err:?}"
    );
    assert!(matches!(
        live.engine.exec_inspect("0123456789abcdef"),
        Err(Error::NotFound { kind: "exec", .. })
    ));

    // A value too large for the kernel is refused before the call, without showing the value.
    let secret = format!("TOKEN={}", "s".repeat(200 * 1024));
    let err = live
        .engine
        .exec_create(&c, &ExecSpec::new(["true"]).env(secret))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid exec.env[0]: 204806 bytes; the kernel limits"),
        "{err}"
    );
    assert!(!err.to_string().contains("sss"));
    let err = live
        .engine
        .exec_create(&c, &ExecSpec::new(Vec::<String>::new()))
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_CONFIG");
}
