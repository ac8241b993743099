// Every mount test again over the fuse-native transport (libfuse 2); mount.test.ts runs them over the default, direct.
process.env.NYDUSD_TEST_TRANSPORT = 'fuse-native'
await import('./mount.test.js')
