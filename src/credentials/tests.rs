use super::*;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use crate::config::{UserSpec, DEFAULT_NON_ROOT_USER};
use crate::process_user;

const ACCESS: &str = "sk-ant-oat01-access-AAAA";
const REFRESH: &str = "sk-ant-ort01-refresh-BBBB";

fn creds_json(access: &str) -> String {
    serde_json::json!({
        "claudeAiOauth": {
            "accessToken": access, "refreshToken": REFRESH, "expiresAt": 1_900_000_000_000u64,
            "scopes": ["user:inference"], "subscriptionType": "max", "futureSecret": "zzzz-9999",
        },
        "otherTool": {"token": "other-secret"},
    })
    .to_string()
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

/// A home with `.claude/.credentials.json` holding `access`.
fn home_with_file(access: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    fs::create_dir(home.path().join(".claude")).unwrap();
    fs::write(
        home.path().join(".claude/.credentials.json"),
        creds_json(access),
    )
    .unwrap();
    home
}

#[test]
fn env_comes_first() {
    let home = home_with_file(ACCESS);
    let h = home.path().to_str().unwrap();
    let c =
        Credentials::resolve(env(&[("ANTHROPIC_API_KEY", "sk-ant-api-1"), ("HOME", h)])).unwrap();
    assert_eq!(
        c.source(),
        &CredentialSource::Env(vec!["ANTHROPIC_API_KEY".into()])
    );
    assert_eq!(c.exec_env(), ["ANTHROPIC_API_KEY=sk-ant-api-1"]);
    assert_eq!(
        c.write_container_copy(home.path(), "a", DEFAULT_NON_ROOT_USER)
            .unwrap(),
        None
    );

    let c =
        Credentials::resolve(env(&[("CLAUDE_CODE_OAUTH_TOKEN", "oauth-1"), ("HOME", h)])).unwrap();
    assert_eq!(c.exec_env(), ["CLAUDE_CODE_OAUTH_TOKEN=oauth-1"]);

    let c = Credentials::resolve(env(&[
        ("CLAUDE_CODE_OAUTH_TOKEN", "oauth-1"),
        ("ANTHROPIC_API_KEY", "sk-ant-api-1"),
    ]))
    .unwrap();
    assert_eq!(
        c.exec_env(),
        [
            "ANTHROPIC_API_KEY=sk-ant-api-1",
            "CLAUDE_CODE_OAUTH_TOKEN=oauth-1"
        ]
    );
    assert_eq!(
        c.redactor().redact("oauth-1 sk-ant-api-1"),
        "[REDACTED] [REDACTED]"
    );
}

#[test]
fn empty_env_values_fall_through_to_the_file() {
    let home = home_with_file(ACCESS);
    let c = Credentials::resolve(env(&[
        ("ANTHROPIC_API_KEY", ""),
        ("HOME", home.path().to_str().unwrap()),
    ]))
    .unwrap();
    assert_eq!(
        c.source(),
        &CredentialSource::File(home.path().join(".claude/.credentials.json"))
    );
    assert!(c.exec_env().is_empty());
    assert_eq!(c.expires_at_ms(), Some(1_900_000_000_000));
}

#[test]
fn claude_config_dir_beats_home() {
    let home = home_with_file("from-home-token");
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(".credentials.json"),
        creds_json("from-config-dir"),
    )
    .unwrap();
    let c = Credentials::resolve(env(&[
        ("HOME", home.path().to_str().unwrap()),
        ("CLAUDE_CONFIG_DIR", dir.path().to_str().unwrap()),
    ]))
    .unwrap();
    assert_eq!(
        c.source(),
        &CredentialSource::File(dir.path().join(".credentials.json"))
    );
    assert_eq!(c.redactor().redact("from-config-dir"), "[REDACTED]");
}

#[test]
fn nothing_found_says_what_to_do() {
    assert_eq!(
        Credentials::resolve(env(&[])).unwrap_err().to_string(),
        "invalid credentials: no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN is set, and neither CLAUDE_CONFIG_DIR nor HOME points at a credentials file; set one of them or log in with 'claude'"
    );
    let home = tempfile::tempdir().unwrap();
    let e = Credentials::resolve(env(&[("HOME", home.path().to_str().unwrap())])).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("invalid credentials: no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN is set and there is no credentials file at {}/.claude/.credentials.json; set one of them or log in with 'claude'", home.path().display())
    );
}

#[test]
fn bad_files_are_errors_without_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".credentials.json");
    for (content, want) in [
        (
            "{\"claudeAiOauth\": {\"accessToken\": \"sk-secret-partial",
            "is not valid JSON (line 1 column",
        ),
        (
            "{\"other\": {\"accessToken\": \"sk-secret-x\"}}",
            "has no \"claudeAiOauth\" object",
        ),
        (
            "{\"claudeAiOauth\": {\"refreshToken\": \"sk-secret-y\"}}",
            "has no \"claudeAiOauth.accessToken\"",
        ),
        (
            "{\"claudeAiOauth\": {\"accessToken\": \"\"}}",
            "has no \"claudeAiOauth.accessToken\"",
        ),
    ] {
        fs::write(&p, content).unwrap();
        let e = Credentials::from_file(&p).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("sk-secret"), "{e}");
    }
}

#[test]
fn sanitised_copy_has_no_refresh_token() {
    let home = home_with_file(ACCESS);
    let state = tempfile::tempdir().unwrap();
    let c = Credentials::from_file(&home.path().join(".claude/.credentials.json")).unwrap();
    let me = process_user().unwrap();
    let path = c
        .write_container_copy(state.path(), "fleet.agent one", me)
        .unwrap()
        .unwrap();
    assert_eq!(
        path,
        Credentials::container_copy_path(state.path(), "fleet.agent one")
    );
    assert!(path.starts_with(state.path().join("docker-credentials")));

    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains(REFRESH) && !text.contains("refreshToken"));
    assert!(!text.contains("futureSecret") && !text.contains("other-secret"));
    assert_eq!(text.len() % 4096, 0);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"claudeAiOauth": {"accessToken": ACCESS, "expiresAt": 1_900_000_000_000u64,
                                             "scopes": ["user:inference"], "subscriptionType": "max"}})
    );
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), me.uid);
    let dir_mode = fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    assert_eq!(
        fs::metadata(state.path().join("docker-credentials"))
            .unwrap()
            .mode()
            & 0o777,
        0o700
    );
    // Both tokens are known to the redactor.
    assert_eq!(
        c.redactor().redact(&format!("{ACCESS} {REFRESH}")),
        "[REDACTED] [REDACTED]"
    );
}

#[test]
fn copy_belongs_to_the_container_user() {
    let home = home_with_file(ACCESS);
    let state = tempfile::tempdir().unwrap();
    let c = Credentials::from_file(&home.path().join(".claude/.credentials.json")).unwrap();
    let other = UserSpec {
        uid: 4321,
        gid: Some(4321),
    };
    let path = c
        .write_container_copy(state.path(), "a", other)
        .unwrap()
        .unwrap();
    let meta = fs::metadata(&path).unwrap();
    if process_user().unwrap().is_root() {
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (4321, 4321, 0o600)
        );
    } else {
        // We cannot give it away: it becomes readable, the 0700 directories keep host users out.
        assert_eq!(meta.mode() & 0o777, 0o644);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
    }
}

/// The reason for rewriting in place: a bind mount pins the inode. Holding the file open stands in
/// for the container's mount: after a refresh on the host, the held inode shows the new token.
#[test]
fn refreshed_token_reaches_a_mounted_copy() {
    let home = home_with_file(ACCESS);
    let file = home.path().join(".claude/.credentials.json");
    let state = tempfile::tempdir().unwrap();
    let me = process_user().unwrap();
    let first = Credentials::from_file(&file).unwrap();
    let path = first
        .write_container_copy(state.path(), "a", me)
        .unwrap()
        .unwrap();
    let ino = fs::metadata(&path).unwrap().ino();
    let mut held = fs::File::open(&path).unwrap();

    // Same content: nothing is written (the modification time stays).
    let mtime = fs::metadata(&path).unwrap().mtime_nsec();
    std::thread::sleep(std::time::Duration::from_millis(20));
    first.write_container_copy(state.path(), "a", me).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mtime_nsec(), mtime);

    // The host refreshes its token (a longer one, too); the next job resolves again.
    let new_token = format!("{ACCESS}-refreshed-{}", "x".repeat(100));
    fs::write(&file, creds_json(&new_token)).unwrap();
    let second = Credentials::from_file(&file).unwrap();
    second.write_container_copy(state.path(), "a", me).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().ino(),
        ino,
        "rewritten in place"
    );
    let mut seen = String::new();
    held.read_to_string(&mut seen).unwrap();
    let v: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(v["claudeAiOauth"]["accessToken"], new_token.as_str());

    // And back to a shorter one: still valid JSON through the same inode.
    fs::write(&file, creds_json("short-token")).unwrap();
    Credentials::from_file(&file)
        .unwrap()
        .write_container_copy(state.path(), "a", me)
        .unwrap();
    let mut again = String::new();
    let mut held = fs::File::open(&path).unwrap();
    held.read_to_string(&mut again).unwrap();
    let v: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(v["claudeAiOauth"]["accessToken"], "short-token");
    assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
}

#[test]
fn agents_get_separate_copies() {
    let home = home_with_file(ACCESS);
    let state = tempfile::tempdir().unwrap();
    let c = Credentials::from_file(&home.path().join(".claude/.credentials.json")).unwrap();
    let me = process_user().unwrap();
    let a = c
        .write_container_copy(state.path(), "sub1.agent", me)
        .unwrap()
        .unwrap();
    let b = c
        .write_container_copy(state.path(), "sub2.agent", me)
        .unwrap()
        .unwrap();
    assert_ne!(a, b);
}

#[test]
fn debug_never_shows_secrets() {
    let home = home_with_file(ACCESS);
    let c = Credentials::from_file(&home.path().join(".claude/.credentials.json")).unwrap();
    let d = format!("{c:?}");
    assert!(!d.contains(ACCESS) && !d.contains(REFRESH), "{d}");
    assert!(d.contains("File("), "{d}");
    let c = Credentials::resolve(env(&[("ANTHROPIC_API_KEY", "sk-ant-api-secret")])).unwrap();
    let d = format!("{c:?}");
    assert!(!d.contains("sk-ant-api-secret"), "{d}");
    assert!(d.contains("ANTHROPIC_API_KEY"), "{d}");
}

#[test]
fn discover_allows_nothing_but_not_a_broken_file() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap().to_string();
    let c = Credentials::discover(env(&[("HOME", &h)])).unwrap();
    assert_eq!(c.source(), &CredentialSource::None);
    assert!(c.exec_env().is_empty() && c.redactor().is_empty());
    assert_eq!(
        c.write_container_copy(home.path(), "a", DEFAULT_NON_ROOT_USER)
            .unwrap(),
        None
    );
    assert_eq!(
        Credentials::discover(env(&[])).unwrap().source(),
        &CredentialSource::None
    );

    fs::create_dir(home.path().join(".claude")).unwrap();
    fs::write(home.path().join(".claude/.credentials.json"), "{}").unwrap();
    let e = Credentials::discover(env(&[("HOME", &h)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no \"claudeAiOauth\" object"), "{e}");

    let c = Credentials::discover(env(&[("HOME", &h), ("ANTHROPIC_API_KEY", "sk-1234")])).unwrap();
    assert_eq!(c.exec_env(), ["ANTHROPIC_API_KEY=sk-1234"]);
}

/// Issue 16: on an engine of another machine the sanitised copy cannot be mounted; the file's
/// access token (and only it) goes to the exec instead, and the env source is unchanged.
#[test]
fn a_remote_engine_gets_the_files_access_token_as_exec_env() {
    let home = home_with_file(ACCESS);
    let h = home.path().to_str().unwrap();
    let c = Credentials::resolve(env(&[("HOME", h)])).unwrap();
    assert_eq!(c.exec_env(), Vec::<String>::new());
    assert_eq!(
        c.remote_exec_env(),
        [format!("CLAUDE_CODE_OAUTH_TOKEN={ACCESS}")]
    );
    let c =
        Credentials::resolve(env(&[("ANTHROPIC_API_KEY", "sk-ant-api-1"), ("HOME", h)])).unwrap();
    assert_eq!(c.remote_exec_env(), ["ANTHROPIC_API_KEY=sk-ant-api-1"]);
    let c = Credentials::resolve(env(&[])).unwrap_or_else(|_| Credentials::none());
    assert!(c.remote_exec_env().is_empty());
}
