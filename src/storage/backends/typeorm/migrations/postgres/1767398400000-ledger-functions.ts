import { MigrationInterface, QueryRunner } from 'typeorm';
import { tableNamer } from './1767225600000-initial-schema';

/**
 * The ledger's reserve and settle as PL/pgSQL functions, so each costs one round trip (issue: budgets,
 * performance) instead of BEGIN / INSERT / UPDATE per scope / COMMIT. A function call is one statement:
 * it runs in its own transaction and its row locks are held until it returns.
 *
 * Lock order: every function locks the scope rows it touches in ascending scope order before changing
 * any, so concurrent reserves and settles on overlapping scopes cannot deadlock. Rollover of periodic
 * windows is ledger.ts `rolledOver`, applied in the same UPDATE.
 */
export class PostgresLedgerFunctions1767398400000 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    const t = tableNamer(queryRunner);
    const fn = (name: string) => t(name);
    const scopes = t('ledger_scopes');
    const reservations = t('ledger_reservations');
    const rolled = `(s.period_ms IS NOT NULL AND p_now >= s.window_start + s.period_ms)`;
    await queryRunner.query(`
      CREATE FUNCTION ${fn('ditto_ledger_reserve')}(p_kind text, p_id text, p_scopes text[], p_amount bigint, p_now bigint)
      RETURNS TABLE (refused_scope text, refused_limit bigint, refused_spent bigint, refused_reserved bigint)
      LANGUAGE plpgsql AS $fn$
      DECLARE
        v_scope text;
        v_row record;
      BEGIN
        -- A reservation id that is already outstanding: idempotent, nothing changes.
        INSERT INTO ${reservations} AS r (kind, id, scopes, amount, created_at)
          VALUES (p_kind, p_id, to_json(p_scopes)::text, p_amount, p_now)
          ON CONFLICT (kind, id) DO NOTHING;
        IF NOT FOUND THEN RETURN; END IF;
        INSERT INTO ${scopes} (kind, scope, limit_value, spent, reserved, period_ms, window_start, updated_at)
          SELECT p_kind, u.scope, NULL, 0, 0, NULL, 0, p_now FROM unnest(p_scopes) AS u(scope) ORDER BY u.scope
          ON CONFLICT (kind, scope) DO NOTHING;
        PERFORM 1 FROM ${scopes} s WHERE s.kind = p_kind AND s.scope = ANY (p_scopes) ORDER BY s.scope FOR UPDATE;
        -- All or none: the first scope, in the caller's order, that cannot take the amount refuses.
        FOREACH v_scope IN ARRAY p_scopes LOOP
          SELECT s.limit_value, CASE WHEN ${rolled} THEN 0 ELSE s.spent END AS spent, s.reserved
            INTO v_row FROM ${scopes} s WHERE s.kind = p_kind AND s.scope = v_scope;
          IF v_row.limit_value IS NOT NULL AND v_row.spent + v_row.reserved + p_amount > v_row.limit_value THEN
            DELETE FROM ${reservations} WHERE kind = p_kind AND id = p_id;
            RETURN QUERY SELECT v_scope, v_row.limit_value, v_row.spent, v_row.reserved;
            RETURN;
          END IF;
        END LOOP;
        UPDATE ${scopes} s SET
          spent = CASE WHEN ${rolled} THEN 0 ELSE s.spent END,
          window_start = CASE WHEN ${rolled} THEN p_now - p_now % s.period_ms ELSE s.window_start END,
          reserved = s.reserved + p_amount,
          updated_at = p_now
        WHERE s.kind = p_kind AND s.scope = ANY (p_scopes);
      END
      $fn$`);
    // p_actual NULL = release (spend untouched); otherwise commit. Only the call that deletes the
    // reservation row changes the scopes: settling is exactly-once under concurrency.
    await queryRunner.query(`
      CREATE FUNCTION ${fn('ditto_ledger_settle')}(p_kind text, p_id text, p_actual bigint, p_now bigint)
      RETURNS boolean
      LANGUAGE plpgsql AS $fn$
      DECLARE
        v_scopes text[];
        v_amount bigint;
      BEGIN
        DELETE FROM ${reservations} WHERE kind = p_kind AND id = p_id
          RETURNING ARRAY(SELECT json_array_elements_text(scopes::json)), amount INTO v_scopes, v_amount;
        IF NOT FOUND THEN RETURN false; END IF;
        PERFORM 1 FROM ${scopes} s WHERE s.kind = p_kind AND s.scope = ANY (v_scopes) ORDER BY s.scope FOR UPDATE;
        IF p_actual IS NULL THEN
          UPDATE ${scopes} s SET reserved = GREATEST(s.reserved - v_amount, 0), updated_at = p_now
          WHERE s.kind = p_kind AND s.scope = ANY (v_scopes);
        ELSE
          UPDATE ${scopes} s SET
            spent = (CASE WHEN ${rolled} THEN 0 ELSE s.spent END) + p_actual,
            window_start = CASE WHEN ${rolled} THEN p_now - p_now % s.period_ms ELSE s.window_start END,
            -- Never below 0: putScope (migration) may have rewritten the totals under a live reservation.
            reserved = GREATEST(s.reserved - v_amount, 0),
            updated_at = p_now
          WHERE s.kind = p_kind AND s.scope = ANY (v_scopes);
        END IF;
        RETURN true;
      END
      $fn$`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const t = tableNamer(queryRunner);
    await queryRunner.query(`DROP FUNCTION ${t('ditto_ledger_settle')}(text, text, bigint, bigint)`);
    await queryRunner.query(`DROP FUNCTION ${t('ditto_ledger_reserve')}(text, text, text[], bigint, bigint)`);
  }
}
