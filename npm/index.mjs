// herdctl-container: the package's ESM entry, the same objects as the CommonJS entry.
import { createRequire } from 'node:module';

const cjs = createRequire(import.meta.url)('./index.js');

export const {
  ContainerRunner,
  messages,
  MessageStream,
  resolveDockerConfig,
  parseMemoryToBytes,
  parsePortBinding,
  parseTmpfsMount,
  parseVolumeMount,
  getHostUser,
  DEFAULT_DOCKER_IMAGE,
  DEFAULT_MEMORY_LIMIT,
  DEFAULT_MAX_CONTAINERS,
} = cjs;
export default cjs;
