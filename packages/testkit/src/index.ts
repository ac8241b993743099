export * from './paths.js'
export * from './run.js'
export * from './tree-snapshot.js'
export * from './fixtures.js'
