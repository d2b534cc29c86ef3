-- Applied by every service at start-up, under an advisory lock; each statement is idempotent.
CREATE TABLE IF NOT EXISTS users (
    id            serial PRIMARY KEY,
    username      varchar(255) NOT NULL UNIQUE,
    email         varchar(255) NOT NULL UNIQUE,
    password_hash text NOT NULL,
    -- Ids of the users this one has a dialog with: how "open the existing dialog" is found.
    chats         integer[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Names and addresses are unique regardless of case: "Alice" cannot register beside "alice".
CREATE UNIQUE INDEX IF NOT EXISTS users_username_ci ON users (lower(username));
CREATE UNIQUE INDEX IF NOT EXISTS users_email_ci ON users (lower(email));

-- One row per dialog, written in the same transaction as the dialog's table (chat_service) and
-- as every stored batch (storage_worker): what a dialog list needs, read from one place instead
-- of from N tables. lo < hi are the two user ids; last_at is the newest stored message's time,
-- or the creation time while the dialog is empty.
DO $migrate$
BEGIN
    IF to_regclass('dialogs') IS NULL THEN
        CREATE TABLE dialogs (
            lo         integer NOT NULL,
            hi         integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_seq   bigint NOT NULL DEFAULT 0,
            last_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (lo, hi),
            CHECK (0 < lo AND lo < hi)
        );
        -- A database made before this table: one row per dialog already known through
        -- users.chats (their last_seq and last_at catch up with their next stored batch).
        INSERT INTO dialogs (lo, hi)
        SELECT u.id, peer FROM users u, unnest(u.chats) AS peer WHERE u.id < peer
        ON CONFLICT DO NOTHING;
    END IF;
END
$migrate$;
-- A user's dialogs by activity, from either side of the pair.
CREATE INDEX IF NOT EXISTS dialogs_lo_activity ON dialogs (lo, last_at DESC, hi DESC);
CREATE INDEX IF NOT EXISTS dialogs_hi_activity ON dialogs (hi, last_at DESC, lo DESC);

-- Dialog tables made since this function exist carry no foreign key to users (creating one
-- locks users against every other dialog creation): the storage worker checks each batch's
-- senders instead, and this trigger does the key's ON DELETE CASCADE, for tables old and new.
CREATE OR REPLACE FUNCTION chat_delete_user_messages() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT lo, hi FROM dialogs WHERE lo = OLD.id OR hi = OLD.id LOOP
        IF to_regclass(format('%I', format('chat_%s_%s', d.lo, d.hi))) IS NOT NULL THEN
            EXECUTE format('DELETE FROM %I WHERE sender_id = $1', format('chat_%s_%s', d.lo, d.hi))
            USING OLD.id;
        END IF;
    END LOOP;
    RETURN OLD;
END
$fn$;
CREATE OR REPLACE TRIGGER users_delete_messages AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION chat_delete_user_messages();

-- Read marks: each member's, on the dialog's row, only ever moved forward (chat_service/reads.py).
-- Added only when missing, so a restart takes no lock on `dialogs`.
DO $reads$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'dialogs' AND column_name = 'lo_read') THEN
        ALTER TABLE dialogs ADD COLUMN lo_read bigint NOT NULL DEFAULT 0,
                            ADD COLUMN hi_read bigint NOT NULL DEFAULT 0;
    END IF;
END
$reads$;

-- For each dialog of a `dialogs` page (chat_service/dialog_summary.py), in one call: the newest
-- stored message below bounds[k] (when wants_last[k]), and how many stored messages of peers[k]
-- lie in (afters[k], bounds[k]). One row per dialog, k its position. The dialog's row in
-- `dialogs` (kept in the storage worker's transactions, so seen in the same snapshot as its
-- table) spares the dialog table a count when nothing stored lies above the mark. Table names are built from the two integers only,
-- and quoted with %I.
CREATE OR REPLACE FUNCTION chat_dialog_tails_v1(
    los int[], his int[], peers int[], afters bigint[], bounds bigint[], wants_last boolean[]
) RETURNS TABLE (k int, m_seq bigint, m_id uuid, m_sent_at timestamptz, m_sender int, m_text text, unread bigint)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    stored bigint;
    counting boolean;
BEGIN
    FOR d IN 1 .. coalesce(array_length(los, 1), 0) LOOP
        k := d; m_seq := NULL; m_id := NULL; m_sent_at := NULL; m_sender := NULL; m_text := NULL; unread := 0;
        SELECT last_seq INTO stored FROM dialogs WHERE lo = los[d] AND hi = his[d];
        stored := coalesce(stored, 0);
        -- A dialog whose table is missing (restored without it, dropped by hand) lists empty
        -- instead of failing everyone's list.
        IF to_regclass(format('%I', format('chat_%s_%s', los[d], his[d]))) IS NULL THEN
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- last_seq 0: nothing stored, or a row made for an older dialog that has not caught up
        -- with its table yet (schema.sql's migration): then the table is asked.
        counting := afters[d] + 1 < bounds[d] AND (stored = 0 OR stored > afters[d]);
        IF wants_last[d] THEN
            -- Normally the newest stored row is the row's last_seq: a primary key lookup.
            EXECUTE format(
                'SELECT seq, id, sent_at, sender_id, text FROM %I WHERE seq < $2 AND ($1 = 0 OR seq <= $1)'
                ' ORDER BY seq DESC LIMIT 1', format('chat_%s_%s', los[d], his[d]))
            INTO m_seq, m_id, m_sent_at, m_sender, m_text USING stored, bounds[d];
        END IF;
        IF counting THEN
            EXECUTE format('SELECT count(*) FROM %I WHERE seq > $1 AND seq < $2 AND sender_id = $3',
                           format('chat_%s_%s', los[d], his[d]))
            INTO unread USING afters[d], bounds[d], peers[d];
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;
