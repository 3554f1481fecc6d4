import { ValueTransformer } from 'typeorm';

/** Amounts and epoch-ms times are 64-bit integers in the database; pg returns them as strings. */
export const bigintToNumber: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null ? null : Number(value)),
};
