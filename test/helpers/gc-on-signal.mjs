// Preloaded into a relay child process by the HTTP fuzz and the soak bench
// (NODE_OPTIONS="--expose-gc --import …"): SIGUSR2 runs a full garbage collection, so that the
// heap read from /metrics afterwards is what the relay really retains. Test-only: nothing in src/
// knows about it.
process.on('SIGUSR2', () => {
  globalThis.gc?.();
});
