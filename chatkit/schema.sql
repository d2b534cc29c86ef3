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
