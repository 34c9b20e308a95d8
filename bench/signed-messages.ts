// Pre-signed SNS Notifications for the benchmarks: N messages with unique MessageIds, signed with
// the test signing key (RSA-2048, as AWS) across worker threads, cached in .bench/ (git-ignored)
// because signing is ~30× slower than verifying.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { corpusDir } from '../test/helpers/corpus.js';
import { testTls } from '../test/helpers/fake-sns.js';

export const BENCH_TOPIC = 'arn:aws:sns:us-east-1:123456789012:bench-alarms';

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

const messageId = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
const timestamp = (i: number) => new Date(Date.UTC(2025, 0, 1) + i).toISOString();
const SUBJECT = 'ALARM: "bench-app-node-failure" in US East (N. Virginia)';

// The signer runs as plain JavaScript in worker threads (no TypeScript loader there).
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createPrivateKey, sign } = require('node:crypto');
const { keyPem, message, subject, topic, from, to } = workerData;
const key = createPrivateKey(keyPem);
const out = [];
for (let i = from; i < to; i++) {
  const id = '00000000-0000-4000-8000-' + i.toString(16).padStart(12, '0');
  const ts = new Date(Date.UTC(2025, 0, 1) + i).toISOString();
  const text = 'Message\\n' + message + '\\nMessageId\\n' + id + '\\nSubject\\n' + subject + '\\nTimestamp\\n' + ts +
    '\\nTopicArn\\n' + topic + '\\nType\\nNotification\\n';
  out.push(sign('sha256', Buffer.from(text, 'utf8'), key).toString('base64'));
}
parentPort.postMessage(out);
`;

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
  const cacheDir = new URL('../.bench/', import.meta.url);
  const cacheFile = new URL(`signatures-${key}.txt`, cacheDir);
  // Message i is the same whatever the count: a larger cache serves a smaller request.
  let signatures = existsSync(cacheFile) ? readFileSync(cacheFile, 'utf8').split('\n') : [];
  if (signatures.length >= count) {
    signatures = signatures.slice(0, count);
  } else {
    const started = Date.now();
    const workers = Math.max(1, availableParallelism());
    const per = Math.ceil(count / workers);
    const parts = await Promise.all(
      Array.from({ length: workers }, (_, w) => {
        const worker = new Worker(WORKER, {
          eval: true,
          workerData: {
            keyPem: testTls.signingKeyPem,
            message,
            subject: SUBJECT,
            topic: BENCH_TOPIC,
            from: w * per,
            to: Math.min(count, (w + 1) * per),
          },
        });
        return new Promise<string[]>((resolve, reject) => {
          worker.once('message', (m: string[]) => {
            resolve(m);
            void worker.terminate();
          });
          worker.once('error', reject);
        });
      }),
    );
    signatures = parts.flat();
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(cacheFile, signatures.join('\n'));
    console.log(
      `Signed ${count} notifications in ${((Date.now() - started) / 1000).toFixed(1)} s (cached in .bench/).`,
    );
  }
  return signatures.map((signature, i) =>
    JSON.stringify({
      Type: 'Notification',
      MessageId: messageId(i),
      TopicArn: BENCH_TOPIC,
      Subject: SUBJECT,
      Message: message,
      Timestamp: timestamp(i),
      SignatureVersion: '2',
      Signature: signature,
      SigningCertURL: certUrl,
      UnsubscribeURL: 'https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x',
    }),
  );
}
