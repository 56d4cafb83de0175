// The ESM entry's types (index.mjs), apart from the CommonJS entry's (index.d.ts) so that
// TypeScript sees each entry in its own module format: one .d.ts for both is "masquerading as
// CJS" for `import` under node16/nodenext. index.mjs re-exports the CommonJS entry's objects, so
// these types are those of index.d.ts, plus the default export (module.exports).
import cjs from './index.js'

export * from './index.js'
export default cjs
