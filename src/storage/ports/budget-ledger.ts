import { Ledger } from './ledger';

/** Token ledger port: amounts are tokens. */
export abstract class BudgetLedger extends Ledger {}
