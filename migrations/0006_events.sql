-- The change feed: account events beside number events, one position (seq) across both, the
-- writing transaction's id on every event, and a wake-up on commit.
--
-- Watch reads the events in batches bounded by database snapshots (as PgQ does): a batch is
-- every event whose transaction is visible in the snapshot that closes it and was not in the
-- one that opened it. A transaction that took a lower seq and commits late is in the batch of
-- the snapshot it first shows in, never skipped; see src/flows/watch.rs.

-- The writing transaction. Rows already written get 0: older than every snapshot, so visible
-- in all of them (they committed before any watcher could start).
ALTER TABLE number_events ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE number_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX number_events_xid ON number_events (xid);

-- Changes of accounts: create, update, quota, suspend, resume, delete. Written in the same
-- transaction as the change; `path` is the account's (immutable) materialised path, so Watch
-- and the lists select a subtree by prefix. A separate table rather than a generalised one:
-- number_events keeps its columns, its indexes and the statements that fill it by the
-- million; the two share the sequence, so one position orders them both.
CREATE TABLE account_events (
    seq             bigint PRIMARY KEY DEFAULT nextval('number_events_seq_seq'),
    provider_id     uuid NOT NULL,
    account_id      uuid NOT NULL REFERENCES accounts (id),
    path            text COLLATE "C" NOT NULL,
    time            timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor           text NOT NULL,
    actor_account_id uuid,
    request_id      text NOT NULL DEFAULT '',
    operation       text NOT NULL,
    before          jsonb,
    after           jsonb,
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX account_events_account ON account_events (account_id, seq);
CREATE INDEX account_events_subtree ON account_events (provider_id, path, seq);
CREATE INDEX account_events_xid ON account_events (xid);

-- Watchers are woken when a transaction that wrote events commits (a NOTIFY is delivered at
-- commit, and one per transaction however many statements raise it). The payload says
-- nothing: watchers read the tables.
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('numbering_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER number_events_notify AFTER INSERT ON number_events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
CREATE TRIGGER account_events_notify AFTER INSERT ON account_events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
