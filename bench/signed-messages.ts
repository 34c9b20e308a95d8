// Pre-signed SNS Notifications for the benchmarks: N messages with unique MessageIds, signed with
// the test signing key (RSA-2048, as AWS) in one child process per core, cached in .bench/ (git-ignored)
// because signing is ~30× slower than verifying.
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { corpusDir } from '../test/helpers/corpus.js';
import { type Envelope, testTls } from '../test/helpers/fake-sns.js';

export const BENCH_TOPIC = 'arn:aws:sns:us-east-1:123456789012:bench-alarms';
const SUBJECT = 'ALARM: "bench-app-node-failure" in US East (N. Virginia)';

/** The SNS Message: the real CloudWatch alarm from the corpus when present, else one of the same shape. */
export function alarmMessage(): string {
  const dir = corpusDir();
  const real = dir && `${dir}/messages/cloudwatch-alarm-sns/classic-metric-ALARM.rheoceros-REAL.message.json`;
  if (real && existsSync(real)) return readFileSync(real, 'utf8');
  return JSON.stringify({
    AlarmName: 'bench-app-node-failure',
    AlarmDescription: null,
    AWSAccountId: '123456789012',
    NewStateValue: 'ALARM',
    NewStateReason:
      'Threshold Crossed: 1 out of the last 1 datapoints [1.0 (10/11/21 02:40:00)] was greater than or equal to the threshold (1.0).',
    StateChangeTime: '2021-11-10T02:45:55.640+0000',
    Region: 'US East (N. Virginia)',
    AlarmArn: 'arn:aws:cloudwatch:us-east-1:123456789012:alarm:bench-app-node-failure',
    OldStateValue: 'INSUFFICIENT_DATA',
    Trigger: {
      MetricName: 'ExecutionFailure',
      Namespace: 'bench-app',
      StatisticType: 'Statistic',
      Statistic: 'SUM',
      Unit: 'None',
      Dimensions: [{ value: 'routing_table', name: 'MetricGroupId' }],
      Period: 300,
      EvaluationPeriods: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1.0,
      TreatMissingData: 'missing',
      EvaluateLowSampleCountPercentile: '',
    },
  });
}

/** Notification number `i` (unsigned): a MessageId and Timestamp of its own, the rest shared. */
export function benchNotification(i: number, message: string, certUrl: string): Envelope {
  return {
    Type: 'Notification',
    MessageId: `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
    TopicArn: BENCH_TOPIC,
    Subject: SUBJECT,
    Message: message,
    Timestamp: new Date(Date.UTC(2025, 0, 1) + i).toISOString(),
    SignatureVersion: '2',
    Signature: '',
    SigningCertURL: certUrl,
    UnsubscribeURL: 'https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x',
  };
}

/**
 * Signatures of messages [0, count), cached in `.bench/<file>` (message i is the same whatever the
 * count, so a larger cache serves a smaller request); missing ones are signed in one child process
 * per core, each running `worker` with `args(from, to)` and sending its signatures back over IPC.
 * Child processes rather than worker threads: Node 20 workers do not inherit the tsx loader.
 */
export async function cachedSignatures(
  file: string,
  count: number,
  worker: URL,
  args: (from: number, to: number) => string[],
): Promise<string[]> {
  const dir = new URL('../.bench/', import.meta.url);
  const cacheFile = new URL(file, dir);
  const cached = existsSync(cacheFile) ? readFileSync(cacheFile, 'utf8').split('\n') : [];
  if (cached.length >= count) return cached.slice(0, count);
  const started = Date.now();
  const workers = Math.max(1, availableParallelism());
  const per = Math.ceil(count / workers);
  const parts = await Promise.all(
    Array.from({ length: workers }, (_, w) => {
      const child = fork(worker, args(w * per, Math.min(count, (w + 1) * per)), {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      return new Promise<string[]>((resolve, reject) => {
        child.once('message', (m) => resolve(m as string[]));
        child.once('error', reject);
        child.once('exit', (code) => code !== 0 && reject(new Error(`signing worker exited with ${code}`)));
      });
    }),
  );
  const signatures = parts.flat();
  mkdirSync(dir, { recursive: true });
  writeFileSync(cacheFile, signatures.join('\n'));
  console.log(
    `Signed ${count} messages in ${((Date.now() - started) / 1000).toFixed(1)} s (cached in .bench/).`,
  );
  return signatures;
}

/** A distinct alarm of a steady stream: one SNS message, its own MessageId and dedup key. */
export interface SignedAlarm {
  /** The Notification's JSON, ready to POST. */
  body: string;
  messageId: string;
  /** The dedup key the built-in CloudWatch rule gives its event (the AlarmArn). */
  dedupKey: string;
}

/** The AlarmArn (and so the PagerDuty dedup key) of distinct alarm `i`. */
export const distinctAlarmArn = (i: number) =>
  `arn:aws:cloudwatch:us-east-1:123456789012:alarm:bench-alarm-${i}`;

/**
 * Notification `i` (unsigned) of a stream of distinct alarms: the corpus alarm renamed
 * `bench-alarm-<i>`, going OK → ALARM, so that each message triggers an alert of its own (no
 * open-alert stickiness, no stale check between them) and PagerDuty's copy can be told apart by
 * its dedup key.
 */
export function distinctAlarmNotification(
  i: number,
  template: Record<string, unknown>,
  certUrl: string,
): Envelope {
  const message = JSON.stringify({
    ...template,
    AlarmName: `bench-alarm-${i}`,
    AlarmArn: distinctAlarmArn(i),
    NewStateValue: 'ALARM',
    OldStateValue: 'OK',
  });
  return {
    ...benchNotification(i, message, certUrl),
    MessageId: `00000a1a-0000-4000-8000-${i.toString(16).padStart(12, '0')}`,
    Subject: `ALARM: "bench-alarm-${i}" in US East (N. Virginia)`,
  };
}

/**
 * `count` signed Notifications of distinct alarms (distinctAlarmNotification()), signatures cached
 * in `.bench/` like signedNotifications()'s.
 */
export async function signedDistinctAlarms(count: number, certUrl: string): Promise<SignedAlarm[]> {
  const message = alarmMessage();
  const key = createHash('sha256')
    .update(`${testTls.signingKeyPem}\n${message}\n${BENCH_TOPIC}\ndistinct`)
    .digest('hex')
    .slice(0, 16);
  const signatures = await cachedSignatures(
    `alarms-${key}.txt`,
    count,
    new URL('./sign-worker.ts', import.meta.url),
    (from, to) => ['--distinct-alarms', message, String(from), String(to)],
  );
  const template = JSON.parse(message) as Record<string, unknown>;
  return signatures.map((signature, i) => {
    const envelope = distinctAlarmNotification(i, template, certUrl);
    return {
      body: JSON.stringify({ ...envelope, Signature: signature }),
      messageId: String(envelope.MessageId),
      dedupKey: distinctAlarmArn(i),
    };
  });
}

/**
 * `count` signed SignatureVersion-2 Notification bodies (JSON strings, ready to POST) whose
 * SigningCertURL is `certUrl` (not signed, so the cache survives a new port).
 */
export async function signedNotifications(count: number, certUrl: string): Promise<string[]> {
  const message = alarmMessage();
  const key = createHash('sha256')
    .update(`${testTls.signingKeyPem}\n${message}\n${BENCH_TOPIC}`)
    .digest('hex')
    .slice(0, 16);
  const signatures = await cachedSignatures(
    `signatures-${key}.txt`,
    count,
    new URL('./sign-worker.ts', import.meta.url),
    (from, to) => [message, String(from), String(to)],
  );
  return signatures.map((signature, i) =>
    JSON.stringify({ ...benchNotification(i, message, certUrl), Signature: signature }),
  );
}
