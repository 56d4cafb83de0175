// A consumer under moduleResolution "bundler" (Vite, esbuild, webpack): `import` reads the
// "import" condition (index.d.mts), `import x = require()` the "require" one (index.d.ts).
// Type-checked by ../install.test.js with tsc --noEmit, never run.
import herdctl, { resolveDockerConfig, type DockerConfig } from 'herdctl-container'
import cjs = require('herdctl-container')

export const config: DockerConfig = resolveDockerConfig({ memory: '2g' })
export const same: typeof cjs.ContainerRunner = herdctl.ContainerRunner
// @ts-expect-error parseMemoryToBytes takes a string such as "2g"
cjs.parseMemoryToBytes(2)
