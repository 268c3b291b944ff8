// Drives the real @actions/cache library for crates/wharf/tests/e2e/actions_cache.rs.
// Usage: node actions_cache_client.mjs save KEY PATH...
//        node actions_cache_client.mjs restore KEY RESTORE_KEYS(comma-separated, may be empty) PATH...
// The library is imported from ACTIONS_CACHE_LIB (a file: URL of its lib/cache.js); the service it talks to,
// the token and the service version come from the environment, as on a runner. The last line printed is
// `RESULT <json>`.
const cache = await import(process.env.ACTIONS_CACHE_LIB);
const [command, key, ...rest] = process.argv.slice(2);
let result;
try {
  if (command === 'save') {
    result = { id: await cache.saveCache(rest, key) };
  } else if (command === 'restore') {
    const restoreKeys = rest[0] ? rest[0].split(',') : [];
    result = { key: (await cache.restoreCache(rest.slice(1), key, restoreKeys)) ?? null };
  } else {
    throw new Error(`unknown command ${command}`);
  }
} catch (error) {
  result = { error: `${error.name}: ${error.message}` };
}
console.log(`RESULT ${JSON.stringify(result)}`);
