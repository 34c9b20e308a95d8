import { sqliteBackend } from './backends.js';
import { describeSpoolContract } from './contract.js';

describeSpoolContract(sqliteBackend);
