// Child process of bench/signed-messages.ts: signs notifications [from, to) with the test key and
// sends the signatures back over IPC. argv: [--distinct-alarms] message from to.
import { createPrivateKey } from 'node:crypto';
import { signEnvelope, testTls } from '../test/helpers/fake-sns.js';
import { benchNotification, distinctAlarmNotification } from './signed-messages.js';

const distinct = process.argv[2] === '--distinct-alarms';
const [message = '', from = '0', to = '0'] = process.argv.slice(distinct ? 3 : 2);
const template = distinct ? (JSON.parse(message) as Record<string, unknown>) : {};
const key = createPrivateKey(testTls.signingKeyPem);
const signatures: string[] = [];
for (let i = Number(from); i < Number(to); i++) {
  const envelope = distinct ? distinctAlarmNotification(i, template, '') : benchNotification(i, message, '');
  signatures.push(String(signEnvelope(envelope, key).Signature));
}
process.send?.(signatures, () => process.exit(0));
