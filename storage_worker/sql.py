"""The server-side functions that write a whole batch, all its dialogs, in one round trip.

A batch arrives as flat column arrays (rows grouped by dialog) plus each dialog's ``lo``, ``hi``
and the index of its last row. Table names are built inside PostgreSQL from the two integers
only, and quoted with ``%I``: no text from a message can ever reach an identifier.

``skip_stored`` adds ``ON CONFLICT DO NOTHING``. It is off on the normal path: a speculative
insertion costs PostgreSQL about a fifth more per row, and a conflict only happens when a
message is delivered again (a claim after a crash), which makes the plain insert fail with a
unique violation; the writer then repeats the call with it on.

``isolate`` chooses between the two ways to run it. Without it (the normal case) nothing opens
a subtransaction, so a batch of hundreds of dialogs costs no subtransaction ids; any error
aborts the call. With it, each dialog runs in its own ``EXCEPTION`` block, so one dialog's
failure (a missing table, a row PostgreSQL refuses) is reported, with its SQLSTATE and message,
instead of undoing the others; a refused dialog is then written row by row so that only the
culprit rows stay behind.

``sender_ids`` checks every sender of the batch once (see the function). Dialog tables of the
current layout have no foreign key (chatkit.db): this check is theirs. Older tables still have
the key, whose per-row check was about two fifths of PostgreSQL's work per stored row;
``triggers_off`` turns it off for the batch, which needs a role that may set
``session_replication_role`` (a superuser, or ``GRANT SET ON PARAMETER
session_replication_role``): the writer finds out per connection. Isolated calls (the
fallback) check each dialog's senders on their own, and keep the old tables' keys on.

Each batch also moves its dialogs' rows in ``dialogs`` (last seq, last time) in the same
transaction: what a dialog list reads.

The names carry a version: a replica running older code keeps calling the signature it knows.
"""

from __future__ import annotations

import asyncpg

from chatkit.db import SCHEMA_LOCK_KEY

WRITE_BATCH = (
    "SELECT dialog, item, inserted, state, reason"
    " FROM storage_worker_write_v3($1::int[], $2::int[], $3::int[],"
    " $4::bigint[], $5::uuid[], $6::timestamptz[], $7::int[], $8::text[], $9::boolean, $10::boolean,"
    " $11::int[], $12::boolean)"
)

FUNCTIONS = r"""
-- Lock the users rows of `wanted` senders KEY SHARE until the commit (so none can be deleted
-- first): the check a foreign key makes, once per sender. A missing one raises 23503 as the
-- key would. Dialog tables made since chatkit.db's current layout have no foreign key and rely
-- on this; older ones have both.
CREATE OR REPLACE FUNCTION storage_worker_check_senders_v3(wanted int[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    found int;
BEGIN
    SELECT count(*) INTO found
    FROM (SELECT 1 FROM users WHERE id = ANY(wanted) ORDER BY id FOR KEY SHARE) AS locked;
    IF found <> cardinality(wanted) THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            '%s of the batch''s %s senders are not in "users"', cardinality(wanted) - found,
            cardinality(wanted));
    END IF;
END
$fn$;

-- One dialog's rows into chat_{lo}_{hi}; returns how many were new. With skip_stored,
-- conflicts on seq are no-ops, which makes a redelivered message harmless. With check_senders,
-- the dialog's senders are checked too (when the batch's were not checked at once).
CREATE OR REPLACE FUNCTION storage_worker_insert_v3(
    lo int, hi int, seqs bigint[], ids uuid[], sent_ats timestamptz[], senders int[], texts text[],
    skip_stored boolean, check_senders boolean
) RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
    added int;
BEGIN
    EXECUTE format(
        'INSERT INTO %I (seq, id, sent_at, sender_id, text) SELECT * FROM unnest($1, $2, $3, $4, $5)%s',
        format('chat_%s_%s', lo, hi), CASE WHEN skip_stored THEN ' ON CONFLICT DO NOTHING' ELSE '' END)
    USING seqs, ids, sent_ats, senders, texts;
    GET DIAGNOSTICS added = ROW_COUNT;
    -- After the insert, so that a missing table is reported as such (42P01); as safe as
    -- before it: the senders stay locked until the commit, and a missing one undoes the rows.
    IF check_senders THEN
        PERFORM storage_worker_check_senders_v3(ARRAY(SELECT DISTINCT unnest(senders)));
    END IF;
    RETURN added;
END
$fn$;

-- A dialog's row in `dialogs` brought up to its table's newest row (the isolated path, where
-- some rows of the batch may have been refused).
CREATE OR REPLACE FUNCTION storage_worker_touch_v3(lo int, hi int) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format(
        'UPDATE dialogs d SET last_seq = m.seq, last_at = greatest(d.last_at, m.sent_at)'
        ' FROM (SELECT seq, sent_at FROM %I ORDER BY seq DESC LIMIT 1) m'
        ' WHERE d.lo = $1 AND d.hi = $2 AND d.last_seq < m.seq',
        format('chat_%s_%s', lo, hi))
    USING lo, hi;
END
$fn$;

-- One dialog, its failure caught: a row (d, NULL, added, NULL, NULL) when stored; otherwise
-- (d, NULL, 0, state, reason) when every row failed alike, or, after a row-by-row retry, a
-- row (d, i, 0, state, reason) per refused row i (1-based) and (d, NULL, added, NULL, NULL).
CREATE OR REPLACE FUNCTION storage_worker_isolated_v3(
    d int, lo int, hi int, seqs bigint[], ids uuid[], sent_ats timestamptz[], senders int[], texts text[]
) RETURNS TABLE (dialog int, item int, inserted int, state text, reason text)
LANGUAGE plpgsql AS $fn$
DECLARE
    n int := array_length(seqs, 1);
    total int := 0;
    failed_state text;
    failed_reason text;
BEGIN
    dialog := d;
    BEGIN
        inserted := storage_worker_insert_v3(lo, hi, seqs, ids, sent_ats, senders, texts, true, true);
        PERFORM storage_worker_touch_v3(lo, hi);
        RETURN NEXT;
        RETURN;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_reason = MESSAGE_TEXT;
    END;
    -- A missing table (42P01) fails every row alike; a single row is its own culprit.
    IF failed_state = '42P01' OR n = 1 THEN
        inserted := 0; state := failed_state; reason := failed_reason;
        RETURN NEXT;
        RETURN;
    END IF;
    FOR i IN 1 .. n LOOP
        BEGIN
            total := total + storage_worker_insert_v3(
                lo, hi, seqs[i:i], ids[i:i], sent_ats[i:i], senders[i:i], texts[i:i], true, true);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_reason = MESSAGE_TEXT;
            item := i; inserted := 0; state := failed_state; reason := failed_reason;
            RETURN NEXT;
        END;
    END LOOP;
    PERFORM storage_worker_touch_v3(lo, hi);
    item := NULL; inserted := total; state := NULL; reason := NULL;
    RETURN NEXT;
END
$fn$;

-- A whole batch in one call and one transaction (one commit, one WAL flush). `ends` holds
-- each dialog's last row index (1-based) in the row arrays. Isolated dialogs always skip stored
-- rows and check their own senders: isolation is the fallback, after a plain call was refused.
--
-- `sender_ids`, when given, holds every sender of the batch once, sorted: they are checked
-- once (storage_worker_check_senders_v3) instead of per dialog. With `triggers_off`, the
-- per-row triggers of older tables' foreign keys are then off for this transaction only (SET
-- LOCAL): the same check, made once.
--
-- Then each dialog's row in `dialogs` takes the batch's newest seq and time, in the same
-- transaction, locked in (lo, hi) order (so two lanes sharing dialogs cannot deadlock) and
-- only at the end, so a lane waiting for another's commit waits for that commit only.
CREATE OR REPLACE FUNCTION storage_worker_write_v3(
    los int[], his int[], ends int[],
    seqs bigint[], ids uuid[], sent_ats timestamptz[], senders int[], texts text[],
    isolate boolean, skip_stored boolean, sender_ids int[], triggers_off boolean
) RETURNS TABLE (dialog int, item int, inserted int, state text, reason text)
LANGUAGE plpgsql AS $fn$
DECLARE
    n int := coalesce(array_length(los, 1), 0);
    first int := 1;
    last int;
BEGIN
    IF sender_ids IS NOT NULL THEN
        PERFORM storage_worker_check_senders_v3(sender_ids);
        IF triggers_off THEN
            SET LOCAL session_replication_role = replica;
        END IF;
    END IF;
    FOR d IN 1 .. n LOOP
        last := ends[d];
        IF isolate THEN
            RETURN QUERY SELECT * FROM storage_worker_isolated_v3(
                d, los[d], his[d], seqs[first:last], ids[first:last], sent_ats[first:last],
                senders[first:last], texts[first:last]);
        ELSE
            dialog := d; item := NULL; state := NULL; reason := NULL;
            inserted := storage_worker_insert_v3(
                los[d], his[d], seqs[first:last], ids[first:last], sent_ats[first:last],
                senders[first:last], texts[first:last], skip_stored, sender_ids IS NULL);
            RETURN NEXT;
        END IF;
        first := last + 1;
    END LOOP;
    IF NOT isolate AND n > 0 THEN
        PERFORM 1 FROM dialogs
        WHERE (lo, hi) IN (SELECT * FROM unnest(los, his))
        ORDER BY lo, hi FOR NO KEY UPDATE;
        UPDATE dialogs d SET last_seq = t.seq, last_at = greatest(d.last_at, t.at)
        FROM (
            SELECT los[k] AS lo, his[k] AS hi, max(seqs[i]) AS seq, max(sent_ats[i]) AS at
            FROM generate_series(1, n) AS k,
                 generate_series(CASE WHEN k = 1 THEN 1 ELSE ends[k - 1] + 1 END, ends[k]) AS i
            GROUP BY k
        ) AS t
        WHERE d.lo = t.lo AND d.hi = t.hi AND d.last_seq < t.seq;
    END IF;
END
$fn$;
"""


async def install(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
    """Create or replace the functions. Under the schema lock: two replicas replacing the same
    function at once can fail with "tuple concurrently updated"."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)
        await conn.execute(FUNCTIONS)
