import { Ledger } from './ledger';

/** Cost ledger port: amounts are integer USD micros. */
export abstract class CostLedger extends Ledger {}
