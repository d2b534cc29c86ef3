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

``sender_ids`` replaces the foreign key's check of every row by one check of every sender
of the batch (see the function): the per-row check was about two fifths of PostgreSQL's work
per stored row. It needs a role that may set ``session_replication_role`` (a superuser, or
``GRANT SET ON PARAMETER session_replication_role``); the writer finds out per connection and
otherwise passes NULL, and isolated calls (the fallback) always check row by row.

The names carry a version: a replica running older code keeps calling the signature it knows.
"""

from __future__ import annotations

import asyncpg

from chatkit.db import SCHEMA_LOCK_KEY

WRITE_BATCH = (
    "SELECT dialog, item, inserted, state, reason"
    " FROM storage_worker_write_v2($1::int[], $2::int[], $3::int[],"
    " $4::bigint[], $5::uuid[], $6::timestamptz[], $7::int[], $8::text[], $9::boolean, $10::boolean, $11::int[])"
)

FUNCTIONS = r"""
-- One dialog's rows into chat_{lo}_{hi}; returns how many were new. With skip_stored,
-- conflicts are no-ops, which makes a redelivered message harmless.
CREATE OR REPLACE FUNCTION storage_worker_insert_v2(
    lo int, hi int, seqs bigint[], ids uuid[], sent_ats timestamptz[], senders int[], texts text[],
    skip_stored boolean
) RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
    added int;
BEGIN
    EXECUTE format(
        'INSERT INTO %I (seq, id, sent_at, sender_id, text) SELECT * FROM unnest($1, $2, $3, $4, $5)%s',
        format('chat_%s_%s', lo, hi), CASE WHEN skip_stored THEN ' ON CONFLICT DO NOTHING' ELSE '' END)
    USING seqs, ids, sent_ats, senders, texts;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END
$fn$;

-- One dialog, its failure caught: a row (d, NULL, added, NULL, NULL) when stored; otherwise
-- (d, NULL, 0, state, reason) when every row failed alike, or, after a row-by-row retry, a
-- row (d, i, 0, state, reason) per refused row i (1-based) and (d, NULL, added, NULL, NULL).
CREATE OR REPLACE FUNCTION storage_worker_isolated_v2(
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
        inserted := storage_worker_insert_v2(lo, hi, seqs, ids, sent_ats, senders, texts, true);
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
            total := total + storage_worker_insert_v2(
                lo, hi, seqs[i:i], ids[i:i], sent_ats[i:i], senders[i:i], texts[i:i], true);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_reason = MESSAGE_TEXT;
            item := i; inserted := 0; state := failed_state; reason := failed_reason;
            RETURN NEXT;
        END;
    END LOOP;
    item := NULL; inserted := total; state := NULL; reason := NULL;
    RETURN NEXT;
END
$fn$;

-- A whole batch in one call and one transaction (one commit, one WAL flush). `ends` holds
-- each dialog's last row index (1-based) in the row arrays. Isolated dialogs always skip stored
-- rows: isolation is the fallback, after a plain call was refused.
--
-- `sender_ids`, when given, holds every sender of the batch once, sorted: the foreign key's
-- check is then made once per sender instead of once per row. It is the same check (each
-- users row exists and is locked KEY SHARE until the commit, so no one can delete it first),
-- made in one statement; the per-row triggers are then off for this transaction only (SET
-- LOCAL). A missing sender fails the call as the foreign key would, with 23503.
CREATE OR REPLACE FUNCTION storage_worker_write_v2(
    los int[], his int[], ends int[],
    seqs bigint[], ids uuid[], sent_ats timestamptz[], senders int[], texts text[],
    isolate boolean, skip_stored boolean, sender_ids int[]
) RETURNS TABLE (dialog int, item int, inserted int, state text, reason text)
LANGUAGE plpgsql AS $fn$
DECLARE
    first int := 1;
    last int;
    found int;
BEGIN
    IF sender_ids IS NOT NULL THEN
        SELECT count(*) INTO found
        FROM (SELECT 1 FROM users WHERE id = ANY(sender_ids) ORDER BY id FOR KEY SHARE) AS locked;
        IF found <> cardinality(sender_ids) THEN
            RAISE foreign_key_violation USING MESSAGE = format(
                '%s of the batch''s %s senders are not in "users"', cardinality(sender_ids) - found,
                cardinality(sender_ids));
        END IF;
        SET LOCAL session_replication_role = replica;
    END IF;
    FOR d IN 1 .. coalesce(array_length(los, 1), 0) LOOP
        last := ends[d];
        IF isolate THEN
            RETURN QUERY SELECT * FROM storage_worker_isolated_v2(
                d, los[d], his[d], seqs[first:last], ids[first:last], sent_ats[first:last],
                senders[first:last], texts[first:last]);
        ELSE
            dialog := d; item := NULL; state := NULL; reason := NULL;
            inserted := storage_worker_insert_v2(
                los[d], his[d], seqs[first:last], ids[first:last], sent_ats[first:last],
                senders[first:last], texts[first:last], skip_stored);
            RETURN NEXT;
        END IF;
        first := last + 1;
    END LOOP;
END
$fn$;
"""


async def install(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
    """Create or replace the functions. Under the schema lock: two replicas replacing the same
    function at once can fail with "tuple concurrently updated"."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)
        await conn.execute(FUNCTIONS)
