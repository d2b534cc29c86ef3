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
