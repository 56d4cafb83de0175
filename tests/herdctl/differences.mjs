// The tests of herdctl's own suite (packages/core) that pass on stock herdctl and fail with
// herdctl-container swapped in, each with its reason. run.mjs fails on any other such test, and on
// an entry here that no longer differs. The README's "Using it in herdctl" lists the same.
//
// kind `deliberate`: herdctl-container does differently on purpose (safer, or refusing early what
// the engine refuses late). kind `internals`: the test reaches into herdctl's own Docker layer
// (its dockerode calls), which the swap replaces. kind `patch`: the test asserts the very
// behaviour a patch in patches/ changes.
const root = process.getuid && process.getuid() === 0;

const ALL = [
  {
    file: 'src/runner/runtime/__tests__/container-runner-oauth.test.ts',
    test: 'ContainerRunner OAuth injection into reused persistent container (#327) SDK exec carries the NEW token after a host-side refresh, with the container reused',
    kind: 'internals',
    reason: "it hands ContainerRunner a mock dockerode client and counts its exec calls; herdctl-container speaks the Engine API itself (the client only gives it the engine's address), so the mock sees nothing. The behaviour it guards (a refreshed token reaches a reused persistent container, per exec) is herdctl-container's own test (tests/config_live.rs).",
  },
  {
    file: 'src/runner/runtime/__tests__/docker-config.test.ts',
    test: 'parseVolumeMount valid formats handles relative paths',
    kind: 'deliberate',
    reason: 'a relative host path ("./local:/container") is refused when the config is read: the engine refuses it at create, so herdctl would only find out when a job starts.',
  },
  {
    file: 'src/runner/runtime/__tests__/docker-config.test.ts',
    test: 'parseVolumeMount invalid formats allows empty path components (Docker accepts them)',
    kind: 'deliberate',
    reason: '"::" (empty host and container paths) is refused when the config is read; the engine refuses it at create.',
  },
  {
    file: 'src/runner/runtime/__tests__/docker-config.test.ts',
    test: 'getHostUser uses process.getuid and process.getgid when available',
    kind: 'deliberate',
    when: root,
    reason: 'run as root, getHostUser() gives the non-root default 1000:1000, not 0:0: an agent runs as root only when docker.user says so.',
  },
  {
    file: 'src/fleet-manager/__tests__/list-agent-commands.test.ts',
    test: 'FleetManager.listAgentCommands() surfaces StreamingSessionUnsupportedError for Docker-wrapped agents',
    kind: 'patch',
    reason: "patches/open-chat-session.patch: a Docker agent whose runtime has openSession (herdctl-container's does) opens its chat session in its container instead of being refused. In this unit test the agent's default image is not there (and is never pulled), so the session fails to start rather than being refused; fleet-sessions.test.mjs shows listAgentCommands working for a Docker agent. With herdctl's own ContainerRunner (no openSession) the patch still refuses, so stock herdctl's behaviour is unchanged.",
  },
];

export const DIFFERENCES = ALL.filter((d) => d.when !== false);

/**
 * Tests left out of both runs (stock and swapped), by a vitest name pattern: herdctl's
 * docker-security.test.ts "Container Configuration" tests run `docker create ... alpine:latest`,
 * which makes the engine pull from Docker Hub. This project's tests never contact a public
 * registry, and those tests exercise the docker CLI, not herdctl's Docker layer.
 */
export const EXCLUDED = {
  pattern: '^(?!Docker Security Hardening Container Configuration )',
  reason: "docker-security.test.ts's 'Container Configuration' tests (they pull alpine:latest from Docker Hub)",
};
