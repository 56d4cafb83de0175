//! herdctl's view of the per-agent session directories.
//!
//! Each agent's containers see only `docker-sessions/<agent_dir_name>/`, but herdctl's session
//! code (its resume check, its session listing, its delete) reads one flat directory,
//! `docker-sessions/<session id>.jsonl`. Both views are kept by giving every transcript a second
//! name: a hard link in the flat directory, made by the host around each agent job.
//!
//! Why hard links rather than symlinks: a symlink in the flat directory would follow whatever the
//! agent later puts under its own name, and the agent owns its directory: it could swap its
//! transcript for a symlink to a host file (`/etc/shadow`, another agent's transcript) and have
//! herdctl read that. A hard link names the inode, which the agent can only append to; only
//! regular files of the agent's own directory are ever linked.
//!
//! Why only transcripts written since the job started: herdctl deletes a session by removing the
//! flat name. Relinking every unlinked transcript would bring deleted sessions back after the next
//! job; linking only what this job wrote (a new session, or one the agent resumed, hence wanted)
//! leaves them deleted.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// A session id as herdctl accepts one (`getDockerSessionFile`'s check), with the `.jsonl` suffix.
fn transcript_id(file_name: &str) -> Option<&str> {
    let id = file_name.strip_suffix(".jsonl")?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(id)
}

/// Gives each transcript in `agent_dir` that was modified at or after `since` and has no second
/// name yet (one link) a hard link `<flat>/<id>.jsonl`. A name already taken in `flat` is left
/// alone (it is another transcript, or this one already). Returns what could not be linked, for
/// the job's warnings; a missing `agent_dir` is no error (the job wrote nothing).
pub(crate) fn link_new_transcripts(
    flat: &Path,
    agent_dir: &Path,
    since: SystemTime,
) -> Vec<String> {
    let Ok(entries) = fs::read_dir(agent_dir) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(transcript_id) else {
            continue;
        };
        // symlink_metadata: a symlink the agent made is never followed, and never linked.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let fresh = meta.modified().is_ok_and(|m| m >= since);
        if !meta.file_type().is_file() || meta.nlink() != 1 || !fresh {
            continue;
        }
        match fs::hard_link(entry.path(), flat.join(format!("{id}.jsonl"))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => warnings.push(format!(
                "link session {id} into {} for herdctl: {e}",
                flat.display()
            )),
        }
    }
    warnings
}

/// Before a job resumes `session_id`: a transcript that exists only in the flat directory (one
/// link, so no agent's directory holds it: written by herdctl's own Docker layer, which shared
/// that directory among all agents) is given to this agent's directory, so the resume finds it.
/// A transcript another agent's directory holds (two links) is never given to this one. When
/// `owner` is set (this process is root), the claimed file is given to the container user, who
/// must read and append to it. Best effort: whatever fails, the resume then fails in the agent
/// and herdctl starts a fresh session.
pub(crate) fn claim_legacy_transcript(
    flat: &Path,
    agent_dir: &Path,
    session_id: &str,
    owner: Option<(u32, Option<u32>)>,
) {
    let file = format!("{session_id}.jsonl");
    if transcript_id(&file).is_none() {
        return;
    }
    let (source, target) = (flat.join(&file), agent_dir.join(&file));
    if fs::symlink_metadata(&target).is_ok() {
        return;
    }
    let Ok(meta) = fs::symlink_metadata(&source) else {
        return;
    };
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return;
    }
    if fs::hard_link(&source, &target).is_ok() {
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::chown(&target, Some(uid), gid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dirs() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let flat = root.path().join("docker-sessions");
        let agent = flat.join("agent-0123456789abcdef");
        fs::create_dir_all(&agent).unwrap();
        (root, flat, agent)
    }

    fn ino(p: &Path) -> u64 {
        fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn new_transcripts_get_a_flat_name_for_the_same_file() {
        let (_root, flat, agent) = dirs();
        let before = SystemTime::now() - Duration::from_secs(1);
        fs::write(agent.join("s-1.jsonl"), "{}\n").unwrap();
        assert!(link_new_transcripts(&flat, &agent, before).is_empty());
        assert_eq!(ino(&flat.join("s-1.jsonl")), ino(&agent.join("s-1.jsonl")));
        // The agent appending later is seen through the flat name.
        fs::write(agent.join("s-1.jsonl"), "{}\n{}\n").unwrap();
        assert_eq!(
            fs::read_to_string(flat.join("s-1.jsonl")).unwrap(),
            "{}\n{}\n"
        );
        // Again: nothing changes, no warning.
        assert!(link_new_transcripts(&flat, &agent, before).is_empty());
    }

    #[test]
    fn only_regular_fresh_session_files_are_linked() {
        let (_root, flat, agent) = dirs();
        let secret = flat.parent().unwrap().join("secret");
        fs::write(&secret, "host secret").unwrap();
        std::os::unix::fs::symlink(&secret, agent.join("evil.jsonl")).unwrap();
        fs::create_dir(agent.join("dir.jsonl")).unwrap();
        fs::write(agent.join("bad name.jsonl"), "").unwrap();
        fs::write(agent.join("notes.txt"), "").unwrap();
        fs::write(agent.join("old.jsonl"), "").unwrap();
        let since = SystemTime::now() + Duration::from_secs(60);
        link_new_transcripts(&flat, &agent, since);
        let mut names: Vec<_> = fs::read_dir(&flat)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["agent-0123456789abcdef"], "nothing linked");
        // The old one is linked once it is written after the job's start.
        let since = SystemTime::now() - Duration::from_secs(1);
        fs::write(agent.join("old.jsonl"), "x").unwrap();
        link_new_transcripts(&flat, &agent, since);
        assert!(flat.join("old.jsonl").exists());
        assert!(!flat.join("evil.jsonl").exists());
    }

    /// herdctl deletes a session by removing its flat name; a later job does not bring it back,
    /// unless it writes to it again.
    #[test]
    fn a_deleted_flat_name_stays_deleted() {
        let (_root, flat, agent) = dirs();
        fs::write(agent.join("s-1.jsonl"), "{}\n").unwrap();
        link_new_transcripts(&flat, &agent, SystemTime::now() - Duration::from_secs(1));
        fs::remove_file(flat.join("s-1.jsonl")).unwrap();
        link_new_transcripts(&flat, &agent, SystemTime::now() + Duration::from_secs(60));
        assert!(!flat.join("s-1.jsonl").exists());
    }

    /// Another agent's transcript already holds the flat name: it is neither replaced nor linked
    /// into this agent's directory.
    #[test]
    fn a_taken_flat_name_is_left_alone() {
        let (_root, flat, agent) = dirs();
        let other = flat.join("other-fedcba9876543210");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("s-1.jsonl"), "theirs").unwrap();
        link_new_transcripts(&flat, &other, SystemTime::now() - Duration::from_secs(1));
        fs::write(agent.join("s-1.jsonl"), "mine").unwrap();
        link_new_transcripts(&flat, &agent, SystemTime::now() - Duration::from_secs(1));
        assert_eq!(
            fs::read_to_string(flat.join("s-1.jsonl")).unwrap(),
            "theirs"
        );
        claim_legacy_transcript(&flat, &agent, "s-1", None);
        assert_eq!(fs::read_to_string(agent.join("s-1.jsonl")).unwrap(), "mine");
        let third = flat.join("third-0000000000000000");
        fs::create_dir_all(&third).unwrap();
        claim_legacy_transcript(&flat, &third, "s-1", None);
        assert!(
            !third.join("s-1.jsonl").exists(),
            "held by an agent: not claimed"
        );
    }

    #[test]
    fn a_legacy_flat_transcript_is_claimed_for_a_resume() {
        let (_root, flat, agent) = dirs();
        fs::write(flat.join("legacy-1.jsonl"), "{}\n").unwrap();
        claim_legacy_transcript(&flat, &agent, "legacy-1", None);
        assert_eq!(
            ino(&flat.join("legacy-1.jsonl")),
            ino(&agent.join("legacy-1.jsonl"))
        );
        claim_legacy_transcript(&flat, &agent, "../x", None);
        claim_legacy_transcript(&flat, &agent, "missing", None);
        assert!(!agent.join("missing.jsonl").exists());
    }
}
