-- AIP-155 answers keyed by who asked, for what: (account the caller acts for, subject, method,
-- request id). The same subject and request id under another tenant's token, or for another
-- RPC, is another key, so no caller can replay (or learn of) another's request.
--
-- The answers stored so far were keyed by subject and request id only: they cannot be told
-- apart by account, so they are dropped rather than guessed (a retry spanning this upgrade runs
-- as a first call).
DROP TABLE idempotency;

CREATE TABLE idempotency (
    -- The account the caller acts for; the nil UUID for the platform.
    account_id      uuid NOT NULL,
    actor           text NOT NULL,
    method          text NOT NULL,
    request_id      text NOT NULL,
    -- The least authority a replay needs: the first caller's (0 none, 1 viewer, 2 operator,
    -- 3 admin, 4 platform).
    authority       smallint NOT NULL,
    fingerprint     bytea NOT NULL,
    -- The encoded answer, when kept whole.
    response        bytea,
    -- Otherwise the numbers the answer carries, in its order, re-read on a replay.
    numbers         uuid[],
    create_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, actor, method, request_id),
    CONSTRAINT idempotency_kept CHECK ((response IS NULL) <> (numbers IS NULL))
);
-- The sweeper deletes the oldest answers past the retention, a batch at a time.
CREATE INDEX idempotency_age ON idempotency (create_time);
