// herdctl-container: the package's ESM entry, the same objects as the CommonJS entry.
import { createRequire } from 'node:module';

const cjs = createRequire(import.meta.url)('./index.js');

export const { MessageStream, messages } = cjs;
export default cjs;
