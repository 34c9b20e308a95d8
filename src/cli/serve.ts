import { loadConfig } from '../config/load.js';
import { startRelay } from '../main.js';
import { type Command, configPath, parseCommandArgs } from './command.js';

export const serveCommand: Command = {
  summary: 'Run the relay (zero config: dry-run, HTTP on 0.0.0.0:8080, built-in rules)',
  usage: [
    'Usage: pd-relay serve [--config FILE]',
    '',
    'Options:',
    '  --config FILE  Configuration file (default: $PD_RELAY_CONFIG, else built-in defaults)',
  ].join('\n'),
  async run(args) {
    const { values } = parseCommandArgs(args, { config: { type: 'string', short: 'c' } });
    const config = loadConfig({ file: configPath(values.config) });
    const relay = await startRelay(config);
    // SIGHUP re-reads the config file and the rules; a reload with problems keeps the running ones.
    const reload = () => {
      relay.reload('signal');
    };
    process.on('SIGHUP', reload);
    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals) => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        process.off('SIGHUP', reload);
        relay.close(signal).then(resolve, resolve);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    return 0;
  },
};
