// herdctl's Docker config types and helpers, provided by herdctl-container (see
// container-runner.ts).
export {
  DEFAULT_DOCKER_IMAGE,
  DEFAULT_MAX_CONTAINERS,
  DEFAULT_MEMORY_LIMIT,
  getHostUser,
  parseMemoryToBytes,
  parsePortBinding,
  parseTmpfsMount,
  parseVolumeMount,
  resolveDockerConfig,
} from "herdctl-container";
export type {
  DockerConfig,
  NetworkMode,
  PathMapping,
  PortBinding,
  TmpfsMount,
  VolumeMode,
} from "herdctl-container";
