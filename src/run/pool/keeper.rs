//! The keeper: one thread per pool that warms containers up to the target and removes the ones
//! retired, one at a time, so a pool adds at most one engine operation at a time to the load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::files::{Claim, Purpose};
use super::{Pool, Template, Warm, MAX_DEFER, QUIET};
use crate::engine::{Engine, StartOutcome};
use crate::{labels, plan, Error, Result};

/// The longest pause between two failed warms.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the keeper does next.
enum Task {
    Warm(Arc<Template>),
    Retire(Warm),
    Exit,
}

pub(super) fn spawn(pool: Arc<Pool>, reap_first: bool) -> Result<()> {
    std::thread::Builder::new()
        .name("herdctl-warm-pool".into())
        .spawn(move || run(&pool, reap_first))
        .map(drop)
        .map_err(|e| Error::io("start the warm pool's thread", e))
}

fn run(pool: &Pool, reap_first: bool) {
    if reap_first {
        // What dead processes left in this state directory; best effort, `gc` tries again.
        let _ = super::reap(&pool.engine, &pool.key.state_dir);
    }
    loop {
        match next(pool) {
            Task::Exit => return,
            Task::Retire(warm) => retire(pool, warm),
            Task::Warm(template) => {
                let made = warm_one(pool, &template);
                let mut st = pool.lock();
                st.warming -= 1;
                match made {
                    Ok(warm) if !st.closing && Arc::ptr_eq(&st.template, &template) => {
                        st.idle.push_back(warm);
                        st.failures = 0;
                        st.retry_at = None;
                        st.last_failure = None;
                    }
                    Ok(warm) => st.retire.push(warm),
                    Err(e) => {
                        st.failures += 1;
                        let pause = Duration::from_secs(1 << st.failures.min(6)).min(MAX_BACKOFF);
                        st.retry_at = Some(Instant::now() + pause);
                        st.last_error = Some(format!(
                            "warm pool of agent {}: a container could not be warmed ({e}); jobs make their own until it can (next try in {pause:?})",
                            pool.key.agent
                        ));
                        st.last_failure = Some(e);
                    }
                }
                drop(st);
                pool.changed.notify_all();
            }
        }
    }
}

/// Waits for the next task: retiring first, then warming when the pool is short, no cold acquire
/// of the agent is running in this process, and the agent has been quiet for [`QUIET`] (or the
/// pool short for [`MAX_DEFER`], under a steady stream of claims).
fn next(pool: &Pool) -> Task {
    let mut st = pool.lock();
    loop {
        if let Some(warm) = st.retire.pop() {
            return Task::Retire(warm);
        }
        if st.closing {
            if let Some(warm) = st.idle.pop_front() {
                return Task::Retire(warm);
            }
            // `warming` is this thread's own count: zero here.
            st.running = false;
            drop(st);
            pool.changed.notify_all();
            return Task::Exit;
        }
        let now = Instant::now();
        let short = st.idle.len() + st.warming < st.target;
        let mut wake: Option<Instant> = None;
        if short {
            let since = *st.short_since.get_or_insert(now);
            let retry_at = st.retry_at.filter(|t| *t > now);
            let quiet_at = st.last_activity + QUIET;
            let overdue_at = since + MAX_DEFER;
            match retry_at {
                Some(t) => wake = Some(t),
                // While this process makes cold containers for the agent, a refill would only
                // slow them: the engine serialises much of create and start. It waits for them
                // (each notifies when it ends).
                None if st.cold > 0 && !st.urgent => {}
                None if st.urgent || now >= quiet_at || now >= overdue_at => {
                    st.warming += 1;
                    return Task::Warm(st.template.clone());
                }
                None => wake = Some(quiet_at.min(overdue_at)),
            }
        } else {
            st.short_since = None;
        }
        st = match wake {
            Some(t) => {
                pool.changed
                    .wait_timeout(st, t.saturating_duration_since(now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => pool.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

/// Makes one container as the job would (create, the inspect against the body, start, the
/// check inside), under a `warm` claim so no other process takes it half made. A container that
/// fails any step is removed.
fn warm_one(pool: &Pool, t: &Template) -> Result<Warm> {
    let engine = &pool.engine;
    let name = labels::ephemeral_name(&t.sanitized, labels::now_ms());
    let claim = claim_fresh(pool, &name)?;
    let mount_ids = crate::host::mount_ids(&t.mounts);
    let mut body = t.body.clone();
    {
        let l = &mut body.labels;
        // Not the owner label of a job's ephemeral container: the reaper of those would stop
        // an idle one as leaked, or a job another process took from this pool.
        l.remove(labels::OWNER);
        l.insert(labels::CREATED.into(), labels::now_ms().to_string());
        l.insert(labels::POOL.into(), pool.owner.id().into());
        l.insert(labels::MOUNT_IDS.into(), mount_ids.clone());
        if t.expected.allow {
            l.insert(labels::POOL_LOOSE.into(), "1".into());
        }
    }
    let id = match engine.create_container(&name, &body) {
        Ok(id) => id,
        Err(e) => {
            claim.release();
            return Err(e);
        }
    };
    let checked = engine
        .inspect_container(&id)
        .and_then(|got| plan::verify(&body, &t.expected, &got, &crate::host::ThisHost))
        .and_then(|warnings| match engine.start_container(&id)? {
            StartOutcome::Started | StartOutcome::AlreadyRunning => Ok(warnings),
        })
        .and_then(|warnings| check_warmed(engine, t, &id, &name).map(|()| warnings));
    match checked {
        Ok(warnings) => {
            claim.release();
            Ok(Warm {
                id,
                name,
                mount_ids,
                warnings,
            })
        }
        Err(e) => {
            let _ = engine.remove_container(&id, true);
            claim.release();
            Err(e)
        }
    }
}

/// The `warm` claim on a name just made, so no other process takes the container half made. No
/// container has this name yet, so a claim already under it is an error, not one to wait for.
fn claim_fresh(pool: &Pool, name: &str) -> Result<Claim> {
    let state_dir = &pool.key.state_dir;
    Claim::take(state_dir, name, Purpose::Warm, pool.owner.id())?.ok_or_else(|| {
        Error::io(
            format!("claim {name}"),
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a claim with this fresh name exists",
            ),
        )
    })
}

/// The check from inside that a job's fresh container gets, run on the warmed one instead (a job
/// that takes it skips its own): only when the body leaves something to prove (no new
/// privileges, no capabilities) or a sandbox runtime is named.
fn check_warmed(engine: &Engine, t: &Template, id: &str, name: &str) -> Result<()> {
    if t.inside.is_needed() || t.runtime.is_some() {
        crate::run::inside::check_inside(engine, id, name, &t.user, t.inside, t.runtime.as_ref())?;
    }
    Ok(())
}

/// Removes one of this process's containers, unless a job (of any process) took it meanwhile.
fn retire(pool: &Pool, warm: Warm) {
    let state_dir = &pool.key.state_dir;
    let claim = match Claim::take(state_dir, &warm.name, Purpose::Retire, pool.owner.id()) {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            pool.lock()
                .report
                .warnings
                .push(format!("retire pool container {}: {e}", warm.name));
            return;
        }
    };
    let outcome = pool.engine.remove_container(&warm.id, true);
    let mut st = pool.lock();
    match outcome {
        Ok(_) => {
            st.report.removed.push(warm.id);
            claim.release();
        }
        Err(e) => {
            // The claim stays (free once dropped): `gc` removes the container later.
            st.report
                .warnings
                .push(format!("remove pool container {}: {e}", warm.name));
        }
    }
}
