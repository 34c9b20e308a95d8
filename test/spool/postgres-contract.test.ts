import { postgresBackend } from './backends.js';
import { describeSpoolContract } from './contract.js';

describeSpoolContract(postgresBackend);
