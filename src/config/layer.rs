//! Layering: fleet defaults, then the fleet's entry for the agent, then the agent's own block.
//!
//! The two fleet layers are trusted: the per-agent entry overrides the defaults field by field
//! (maps like `env`, `labels` and `host_config` key by key, lists whole, as herdctl's deep merge
//! does). The agent's own block lives in a workspace the agent can write, so it may set only
//! [`AGENT_FIELDS`], and only to tighten what the fleet gives; a field it does not write keeps the
//! fleet's value (it never resets one to a default).

use serde_json::Value;

use super::input::{field_of_key, DockerInput};
use super::*;
use crate::{Error, Result};

/// The fields an agent's own `docker:` block may set (always only to tighten): herdctl's
/// `AgentDockerSchema` plus `network`, which an agent may narrow (host to bridge to none), and
/// `runtime`, which an agent may set to a sandbox (gVisor's `runsc`, Kata) over the default.
pub const AGENT_FIELDS: [&str; 13] = [
    "enabled",
    "ephemeral",
    "network",
    "memory",
    "cpu_shares",
    "cpu_period",
    "cpu_quota",
    "max_containers",
    "workspace_mode",
    "tmpfs",
    "pids_limit",
    "labels",
    "runtime",
];

/// The docker blocks that apply to one agent, each optional (`None` or `null` for absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct DockerLayers<'a> {
    /// The fleet file's `defaults.docker`.
    pub fleet_defaults: Option<&'a Value>,
    /// The `docker` block of the fleet file's entry for this agent (`agents[].overrides.docker`).
    pub fleet_agent: Option<&'a Value>,
    /// The `docker` block of the agent's own config file.
    pub agent: Option<&'a Value>,
}

/// [`crate::resolve_layered`] with the host's user given (see [`super::resolve_for`]).
pub(crate) fn resolve_layered_for(
    layers: &DockerLayers<'_>,
    host_user: UserSpec,
) -> Result<DockerConfig> {
    let defaults = read(layers.fleet_defaults, "the fleet's defaults")?;
    let per_agent = read(layers.fleet_agent, "the fleet's entry for this agent")?;
    let fleet = overlay(defaults, per_agent);
    let agent = match layers.agent {
        Some(v) => {
            reject_fleet_only(v)?;
            read(Some(v), "the agent's own config")?
        }
        None => DockerInput::default(),
    };
    tighten(fleet, agent)?.resolve(host_user)
}

fn read(v: Option<&Value>, layer: &str) -> Result<DockerInput> {
    DockerInput::from_value(v.unwrap_or(&Value::Null)).map_err(|e| in_layer(e, layer))
}

/// Adds the layer to an error's problem text.
fn in_layer(e: Error, layer: &str) -> Error {
    match e {
        Error::InvalidConfig { field, problem } => Error::InvalidConfig {
            field,
            problem: format!("{problem} (in {layer})"),
        },
        other => other,
    }
}

/// Refuses, before reading any value, a fleet-only key in the agent's own block.
fn reject_fleet_only(v: &Value) -> Result<()> {
    let Some(map) = v.as_object() else {
        return Ok(());
    };
    for key in map.keys() {
        if let Some(field) = field_of_key(key) {
            if !AGENT_FIELDS.contains(&field) {
                return Err(Error::invalid(
                    format!("docker.{field}"),
                    "only the fleet config may set this: an agent's own config lives in a workspace the agent can write; set it in the fleet's defaults or in the agent's entry in the fleet file",
                ));
            }
        }
    }
    Ok(())
}

/// The runtime a block asks for, in either spelling (`runtime`, `host_config.Runtime`).
fn runtime_of(block: &DockerInput) -> Result<Option<String>> {
    Ok(match &block.runtime {
        Some(r) => Some(r.clone()),
        None => super::input::host_config_runtime(block.host_config.as_ref())?,
    })
}

/// Drops a block's runtime in both spellings, for a later layer's to take its place.
fn forget_runtime(block: &mut DockerInput) {
    block.runtime = None;
    if let Some(hc) = &mut block.host_config {
        hc.retain(|k, _| !k.eq_ignore_ascii_case("Runtime"));
    }
}

/// `over` wins field by field; maps merge key by key. The runtime is one field in two spellings:
/// the later layer's, in whichever spelling, replaces the earlier's.
fn overlay(mut base: DockerInput, over: DockerInput) -> DockerInput {
    if over.runtime.is_some()
        || over
            .host_config
            .iter()
            .flatten()
            .any(|(k, v)| k.eq_ignore_ascii_case("Runtime") && !v.is_null())
    {
        forget_runtime(&mut base);
    }
    fn map<V: Clone>(
        base: Option<std::collections::BTreeMap<String, V>>,
        over: Option<std::collections::BTreeMap<String, V>>,
    ) -> Option<std::collections::BTreeMap<String, V>> {
        match (base, over) {
            (Some(mut b), Some(o)) => {
                b.extend(o);
                Some(b)
            }
            (b, o) => o.or(b),
        }
    }
    let host_config = match (base.host_config, over.host_config) {
        (Some(mut b), Some(o)) => {
            b.extend(o);
            Some(b)
        }
        (b, o) => o.or(b),
    };
    DockerInput {
        enabled: over.enabled.or(base.enabled),
        ephemeral: over.ephemeral.or(base.ephemeral),
        image: over.image.or(base.image),
        network: over.network.or(base.network),
        memory_bytes: over.memory_bytes.or(base.memory_bytes),
        cpu_shares: over.cpu_shares.or(base.cpu_shares),
        cpu_period: over.cpu_period.or(base.cpu_period),
        cpu_quota: over.cpu_quota.or(base.cpu_quota),
        user: over.user.or(base.user),
        max_containers: over.max_containers.or(base.max_containers),
        volumes: over.volumes.or(base.volumes),
        workspace_mode: over.workspace_mode.or(base.workspace_mode),
        env: map(base.env, over.env),
        ports: over.ports.or(base.ports),
        tmpfs: over.tmpfs.or(base.tmpfs),
        pids_limit: over.pids_limit.or(base.pids_limit),
        labels: map(base.labels, over.labels),
        runtime: over.runtime.or(base.runtime),
        host_config,
        allow_unsafe_host_config: over
            .allow_unsafe_host_config
            .or(base.allow_unsafe_host_config),
    }
}

fn loosens(field: &str, asks: impl fmt::Display, gives: impl fmt::Display, how: &str) -> Error {
    Error::invalid(
        format!("docker.{field}"),
        format!(
            "the agent's own config asks for {asks}, looser than the {gives} the fleet gives; an agent's own config may only tighten ({how}), or change it in the fleet config"
        ),
    )
}

/// Applies the agent's block over the fleet's, refusing anything that loosens. The checks run in
/// field order (the first loosening field is the one named).
fn tighten(mut fleet: DockerInput, agent: DockerInput) -> Result<DockerInput> {
    if agent.enabled == Some(false) && fleet.enabled == Some(true) {
        return Err(loosens(
            "enabled",
            "false",
            "true",
            "it may enable Docker, not disable it",
        ));
    }
    fleet.enabled = agent.enabled.or(fleet.enabled);
    // Reuse is a speed trade, not a permission: the container has the same shape either way, and
    // what an agent could leave behind for its next job it can already leave in its workspace.
    fleet.ephemeral = agent.ephemeral.or(fleet.ephemeral);
    if let Some(n) = agent.network {
        let gives = fleet.network.unwrap_or(NetworkMode::Bridge);
        let show = |n: NetworkMode| quote_str(n.as_str());
        no_looser("network", n, gives, show, "host, then bridge, then none")?;
        fleet.network = Some(n);
    }
    tighten_cpu_memory(&mut fleet, &agent)?;
    tighten_host_share(&mut fleet, &agent)?;
    if let Some(extra) = agent.tmpfs {
        fleet.tmpfs = Some(add_tmpfs(fleet.tmpfs.take().unwrap_or_default(), extra)?);
    }
    if let Some(r) = agent.runtime {
        let gives = runtime_of(&fleet)?;
        let sandbox = super::runtime::is_sandbox_name;
        if gives.as_deref() != Some(r.as_str())
            && (!sandbox(&r) || gives.as_deref().is_some_and(sandbox))
        {
            let gives = gives.map_or("default runtime".into(), |g| quote_str(&g));
            return Err(loosens(
                "runtime",
                quote_str(&r),
                gives,
                "a sandbox runtime such as runsc (gVisor) or kata over the default",
            ));
        }
        forget_runtime(&mut fleet);
        fleet.runtime = Some(r);
    }
    if let Some(extra) = agent.labels {
        fleet.labels = Some(add_labels(fleet.labels.take().unwrap_or_default(), extra)?);
    }
    Ok(fleet)
}

/// Refuses an agent's value of an ordered setting above what the fleet `gives` (its value or the
/// default): an agent's own block may only tighten. `show` writes a value as the error says it.
fn no_looser<T: PartialOrd + Copy>(
    field: &str,
    asks: T,
    gives: T,
    show: impl Fn(T) -> String,
    how: &str,
) -> Result<()> {
    if asks > gives {
        return Err(loosens(field, show(asks), show(gives), how));
    }
    Ok(())
}

/// Tightens the container's memory and CPU: each may only go down from the fleet's.
fn tighten_cpu_memory(fleet: &mut DockerInput, agent: &DockerInput) -> Result<()> {
    if let Some(m) = agent.memory_bytes {
        let gives = fleet.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES);
        no_looser("memory", m, gives, format_memory, "less memory")?;
        fleet.memory_bytes = Some(m);
    }
    if let Some(s) = agent.cpu_shares {
        let gives = fleet.cpu_shares.unwrap_or(DEFAULT_CPU_SHARES);
        no_looser("cpu_shares", s, gives, |s| s.to_string(), "a lower weight")?;
        fleet.cpu_shares = Some(s);
    }
    if agent.cpu_period.is_some() || agent.cpu_quota.is_some() {
        tighten_cpu_quota(fleet, agent)?;
    }
    Ok(())
}

/// Tightens the CPU quota, a share of a CPU in two fields (quota / period): an agent may change
/// either, as long as the share it gets is no larger than the fleet's.
fn tighten_cpu_quota(fleet: &mut DockerInput, agent: &DockerInput) -> Result<()> {
    let period = agent.cpu_period.or(fleet.cpu_period);
    let quota = agent.cpu_quota.or(fleet.cpu_quota);
    if let Some(fq) = fleet.cpu_quota {
        // CPUs = quota / period; compare quota * other period to stay in integers.
        let fp = fleet.cpu_period.unwrap_or(100_000);
        let (q, p) = (quota.unwrap_or(fq), period.unwrap_or(100_000));
        if u128::from(q) * u128::from(fp) > u128::from(fq) * u128::from(p) {
            let field = if agent.cpu_quota.is_some() {
                "cpu_quota"
            } else {
                "cpu_period"
            };
            return Err(loosens(
                field,
                format!("{q}/{p} µs of CPU"),
                format!("{fq}/{fp} µs"),
                "a smaller share of a CPU",
            ));
        }
    }
    fleet.cpu_period = period;
    fleet.cpu_quota = quota;
    Ok(())
}

/// Tightens what the agent's jobs take of the host besides CPU and memory: containers kept,
/// write access to the workspace, processes.
fn tighten_host_share(fleet: &mut DockerInput, agent: &DockerInput) -> Result<()> {
    if let Some(n) = agent.max_containers {
        let gives = fleet.max_containers.unwrap_or(DEFAULT_MAX_CONTAINERS);
        no_looser(
            "max_containers",
            n,
            gives,
            |n| n.to_string(),
            "keep fewer containers",
        )?;
        fleet.max_containers = Some(n);
    }
    if let Some(m) = agent.workspace_mode {
        let gives = fleet.workspace_mode.unwrap_or(AccessMode::Rw);
        let show = |m: AccessMode| quote_str(m.as_str());
        no_looser("workspace_mode", m, gives, show, "rw to ro")?;
        fleet.workspace_mode = Some(m);
    }
    if let Some(n) = agent.pids_limit {
        let gives = fleet.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
        no_looser("pids_limit", n, gives, |n| n.to_string(), "a lower limit")?;
        fleet.pids_limit = Some(n);
    }
    Ok(())
}

/// Adds the agent's tmpfs mounts to the fleet's (`all`); one at a path the fleet already mounts
/// would change the fleet's, and is refused.
fn add_tmpfs(mut all: Vec<TmpfsMount>, extra: Vec<TmpfsMount>) -> Result<Vec<TmpfsMount>> {
    for (i, t) in extra.into_iter().enumerate() {
        if all.iter().any(|f| f.path == t.path) {
            return Err(Error::invalid(
                format!("docker.tmpfs[{i}]"),
                format!("{} is already a tmpfs mount of the fleet config; an agent's own config may add tmpfs mounts, not change the fleet's", t.path),
            ));
        }
        all.push(t);
    }
    Ok(all)
}

/// Adds the agent's labels to the fleet's (`all`); a different value for a fleet label would
/// change the fleet's, and is refused.
fn add_labels(
    mut all: BTreeMap<String, String>,
    extra: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    for (k, v) in extra {
        if all.get(&k).is_some_and(|old| *old != v) {
            return Err(Error::invalid(
                format!("docker.labels.{k}"),
                "already set by the fleet config; an agent's own config may add labels, not change the fleet's",
            ));
        }
        all.insert(k, v);
    }
    Ok(all)
}

fn quote_str(s: &str) -> String {
    format!("\"{s}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve_layered;
    use serde_json::json;

    fn layered(fleet: Value, agent: Value) -> Result<DockerConfig> {
        resolve_layered(&DockerLayers {
            fleet_defaults: Some(&fleet),
            fleet_agent: None,
            agent: Some(&agent),
        })
    }

    fn err(r: Result<DockerConfig>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn agent_cannot_set_fleet_only_fields() {
        for (key, v) in [
            ("image", json!("evil:latest")),
            ("base_image", json!("evil:latest")),
            ("user", json!("0")),
            ("volumes", json!(["/:/host"])),
            ("env", json!({"A": "b"})),
            ("ports", json!(["22"])),
            ("host_config", json!({"Privileged": true})),
            ("hostConfigOverride", json!({})),
            ("allow_unsafe_host_config", json!(true)),
        ] {
            let e = err(layered(json!({}), json!({ key: v })));
            let field = field_of_key(key).unwrap();
            assert_eq!(
                e,
                format!("invalid docker.{field}: only the fleet config may set this: an agent's own config lives in a workspace the agent can write; set it in the fleet's defaults or in the agent's entry in the fleet file"),
            );
        }
        // The same fields are fine from the fleet's per-agent entry.
        let entry = json!({"user": "0", "env": {"A": "b"}, "image": "x:1"});
        let c = resolve_layered(&DockerLayers {
            fleet_agent: Some(&entry),
            ..Default::default()
        })
        .unwrap();
        assert!(c.user.is_root());
        assert_eq!(c.image, "x:1");
    }

    #[test]
    fn agent_block_does_not_reset_fleet_values() {
        let fleet = json!({
            "enabled": true, "ephemeral": false, "image": "img:1", "network": "none",
            "memory": "1g", "cpu_shares": 256, "pids_limit": 100, "max_containers": 2,
            "workspace_mode": "ro", "user": "1234:1234", "tmpfs": ["/tmp"], "labels": {"team": "a"},
        });
        let base = layered(fleet.clone(), json!({})).unwrap();
        let with_agent = layered(fleet.clone(), json!({"cpu_period": 100000})).unwrap();
        assert_eq!(with_agent.memory_bytes, 1 << 30);
        assert_eq!(with_agent.network, NetworkMode::None);
        assert!(!with_agent.ephemeral);
        assert_eq!(with_agent.workspace_mode, AccessMode::Ro);
        assert_eq!(with_agent.max_containers, 2);
        assert_eq!(with_agent.tmpfs, base.tmpfs);
        assert_eq!(with_agent.labels, base.labels);
        assert_eq!(with_agent.cpu_period, Some(100000));
        // null fields count as unset, too.
        assert_eq!(layered(fleet, json!({"memory": null})).unwrap(), base);
    }

    #[test]
    fn agent_can_tighten() {
        let fleet = json!({"network": "host", "memory": "4g", "workspace_mode": "rw",
                           "cpu_period": 100000, "cpu_quota": 200000, "pids_limit": 500});
        let c = layered(
            fleet.clone(),
            json!({"network": "none", "memory": "512m", "workspace_mode": "ro",
                   "cpu_quota": 50000, "pids_limit": 100, "max_containers": 1, "cpu_shares": 512,
                   "enabled": true, "ephemeral": false, "tmpfs": ["/tmp"], "labels": {"x": "y"}}),
        )
        .unwrap();
        assert_eq!(c.network, NetworkMode::None);
        assert_eq!(c.memory_bytes, 512 << 20);
        assert_eq!(c.workspace_mode, AccessMode::Ro);
        assert_eq!((c.cpu_period, c.cpu_quota), (Some(100000), Some(50000)));
        assert_eq!(c.pids_limit, Some(100));
        assert_eq!(c.max_containers, 1);
        assert!(c.enabled && !c.ephemeral);
        // Bridge is tighter than host; equal is fine.
        assert_eq!(
            layered(fleet.clone(), json!({"network": "bridge"}))
                .unwrap()
                .network,
            NetworkMode::Bridge
        );
        assert_eq!(
            layered(fleet, json!({"memory": "4g"}))
                .unwrap()
                .memory_bytes,
            4 << 30
        );
    }

    #[test]
    fn agent_cannot_loosen() {
        let fleet = json!({"enabled": true, "network": "bridge", "memory": "2g", "workspace_mode": "ro",
                           "cpu_period": 100000, "cpu_quota": 50000, "tmpfs": ["/tmp"], "labels": {"team": "a"}});
        assert_eq!(
            err(layered(fleet.clone(), json!({"network": "host"}))),
            "invalid docker.network: the agent's own config asks for \"host\", looser than the \"bridge\" the fleet gives; an agent's own config may only tighten (host, then bridge, then none), or change it in the fleet config"
        );
        assert_eq!(
            err(layered(fleet.clone(), json!({"memory": "3g"}))),
            "invalid docker.memory: the agent's own config asks for 3g, looser than the 2g the fleet gives; an agent's own config may only tighten (less memory), or change it in the fleet config"
        );
        for (agent, field) in [
            (json!({"enabled": false}), "enabled"),
            (json!({"workspace_mode": "rw"}), "workspace_mode"),
            (json!({"cpu_quota": 60000}), "cpu_quota"),
            (json!({"cpu_period": 50000}), "cpu_period"), // 50000/50000 = 1 CPU > 0.5
            (json!({"cpu_shares": 2048}), "cpu_shares"),  // above the engine's default weight
            (json!({"pids_limit": 100000}), "pids_limit"), // above the runner's default
            (json!({"max_containers": 6}), "max_containers"),
            (json!({"tmpfs": ["/tmp:size=10g"]}), "tmpfs[0]"),
            (json!({"labels": {"team": "b"}}), "labels.team"),
        ] {
            let e = err(layered(fleet.clone(), agent.clone()));
            assert!(
                e.starts_with(&format!("invalid docker.{field}: ")),
                "{agent}: {e}"
            );
        }
        // No fleet memory means the default 2g is what the fleet gives.
        assert!(err(layered(json!({}), json!({"memory": "3g"}))).contains("the 2g the fleet gives"));
    }

    #[test]
    fn fleet_entry_overrides_defaults_field_by_field() {
        let defaults = json!({"memory": "1g", "env": {"A": "1", "B": "2"}, "volumes": ["/a:/a"],
                              "host_config": {"ShmSize": 1, "Init": true}});
        let entry = json!({"network": "none", "env": {"B": "3"}, "volumes": ["/b:/b"],
                           "host_config": {"ShmSize": 2}});
        let c = resolve_layered(&DockerLayers {
            fleet_defaults: Some(&defaults),
            fleet_agent: Some(&entry),
            agent: None,
        })
        .unwrap();
        assert_eq!(c.memory_bytes, 1 << 30);
        assert_eq!(c.network, NetworkMode::None);
        assert_eq!(c.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(c.env.get("B").map(String::as_str), Some("3"));
        assert_eq!(c.volumes.len(), 1);
        assert_eq!(c.volumes[0].host_path, "/b");
        assert_eq!(
            c.host_config_override,
            Some(json!({"ShmSize": 2, "Init": true}))
        );
        // The entry's limits bound the agent.
        let agent = json!({"memory": "2g"});
        let e = resolve_layered(&DockerLayers {
            fleet_defaults: Some(&json!({"memory": "4g"})),
            fleet_agent: Some(&json!({"memory": "1g"})),
            agent: Some(&agent),
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("looser than the 1g"), "{e}");
    }

    #[test]
    fn errors_say_which_layer() {
        let e = resolve_layered(&DockerLayers {
            agent: Some(&json!({"memory": "lots"})),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("invalid docker.memory: Invalid memory format: \"lots\" is not a size"),
            "{e}"
        );
        assert!(e.ends_with("(in the agent's own config)"), "{e}");
        let e = resolve_layered(&DockerLayers {
            fleet_agent: Some(&json!({"network": "wide"})),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.ends_with("(in the fleet's entry for this agent)"), "{e}");
    }
}
