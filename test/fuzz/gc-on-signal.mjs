// Preloaded into the relay child of the HTTP fuzz (NODE_OPTIONS="--expose-gc --import …"): SIGUSR2
// runs a full garbage collection, so that the heap read from /metrics afterwards is what the
// relay really retains. Test-only: nothing in src/ knows about it.
process.on('SIGUSR2', () => {
  globalThis.gc?.();
});
