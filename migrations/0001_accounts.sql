-- The account tree and the idempotency log.
-- Every table carries provider_id (the root account) so the data can be distributed by provider.

CREATE TABLE accounts (
    id              uuid PRIMARY KEY,
    provider_id     uuid NOT NULL REFERENCES accounts (id),
    parent_id       uuid REFERENCES accounts (id),
    -- Materialised path: '/<root>/<child>/.../<id>/' (simple UUIDs), for subtree queries by prefix.
    path            text COLLATE "C" NOT NULL,
    depth           integer NOT NULL CHECK (depth >= 0),
    -- Creation order, for stable pages.
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    display_name    text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 256),
    kind            text NOT NULL DEFAULT '' CHECK (length(kind) <= 64),
    external_ref    text CHECK (length(external_ref) BETWEEN 1 AND 256),
    state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended', 'closed')),
    labels          jsonb NOT NULL DEFAULT '{}',
    max_numbers     bigint CHECK (max_numbers >= 0),
    aging_period_seconds bigint NOT NULL DEFAULT 0 CHECK (aging_period_seconds >= 0),
    version         bigint NOT NULL DEFAULT 1,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    delete_time     timestamptz,
    -- A provider is its own root and has no parent; every other account has one.
    CONSTRAINT accounts_root CHECK ((parent_id IS NULL) = (provider_id = id) AND (parent_id IS NULL) = (depth = 0)),
    CONSTRAINT accounts_aging_on_providers CHECK (parent_id IS NULL OR aging_period_seconds = 0)
);

CREATE UNIQUE INDEX accounts_path ON accounts (path);
CREATE INDEX accounts_children ON accounts (parent_id, seq) WHERE delete_time IS NULL;
CREATE INDEX accounts_subtree ON accounts (provider_id, depth, seq) WHERE delete_time IS NULL;
CREATE UNIQUE INDEX accounts_external_ref ON accounts (provider_id, coalesce(parent_id, id), external_ref)
    WHERE external_ref IS NOT NULL AND delete_time IS NULL;

-- AIP-155: the first answer to each (actor, request_id), so that a retry gets it again.
CREATE TABLE idempotency (
    actor           text NOT NULL,
    request_id      text NOT NULL,
    provider_id     uuid,
    method          text NOT NULL,
    fingerprint     bytea NOT NULL,
    response        bytea NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, request_id)
);
CREATE INDEX idempotency_age ON idempotency (create_time);
