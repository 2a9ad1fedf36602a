-- SIP trunks: named routes an account's numbers point at. A number's sip_trunk stays text (the
-- trunk's name), so imported and older free-text values keep working; the service checks the
-- name against the holder's trunks (or its ancestors') when a caller sets it.
CREATE TABLE sip_trunks (
    id              uuid PRIMARY KEY,
    provider_id     uuid NOT NULL REFERENCES accounts (id),
    account_id      uuid NOT NULL REFERENCES accounts (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    version         bigint NOT NULL DEFAULT 1,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sip_trunks_name_unique UNIQUE (account_id, name)
);
CREATE INDEX sip_trunks_provider_name ON sip_trunks (provider_id, name);

-- List, search and the in-use check of a delete select numbers by trunk.
CREATE INDEX numbers_sip_trunk ON numbers (provider_id, sip_trunk) WHERE sip_trunk <> '' AND status <> 'deleted';
