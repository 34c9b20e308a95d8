// Child process of bench/signed-messages.ts: signs notifications [from, to) with the test key and
// sends the signatures back over IPC. argv: message from to.
import { createPrivateKey } from 'node:crypto';
import { signEnvelope, testTls } from '../test/helpers/fake-sns.js';
import { benchNotification } from './signed-messages.js';

const [message = '', from = '0', to = '0'] = process.argv.slice(2);
const key = createPrivateKey(testTls.signingKeyPem);
const signatures: string[] = [];
for (let i = Number(from); i < Number(to); i++) {
  signatures.push(String(signEnvelope(benchNotification(i, message, ''), key).Signature));
}
process.send?.(signatures, () => process.exit(0));
