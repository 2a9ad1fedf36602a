-- Numbers, series, the event log (history and outbox), and inventory counters.

CREATE TABLE series (
    id              uuid PRIMARY KEY,
    provider_id     uuid NOT NULL REFERENCES accounts (id),
    prefix          text COLLATE "C" NOT NULL CHECK (prefix ~ '^\+[1-9][0-9]{0,14}$'),
    display_name    text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 256),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 1024),
    version         bigint NOT NULL DEFAULT 1,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT series_prefix_unique UNIQUE (provider_id, prefix)
);

CREATE TABLE numbers (
    id                  uuid PRIMARY KEY,
    -- The owner: the provider that added the number. Never changes.
    provider_id         uuid NOT NULL REFERENCES accounts (id),
    -- Collation C: byte order is E.164 order, and one btree serves both LIKE 'prefix%' and ORDER BY.
    e164                text COLLATE "C" NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{0,14}$'),
    holder_id           uuid NOT NULL REFERENCES accounts (id),
    -- The holder's materialised path, for subtree filters without walking the tree.
    holder_path         text COLLATE "C" NOT NULL,
    status              text NOT NULL CHECK (status IN ('available', 'reserved', 'assigned', 'returned', 'aging', 'deleted')),
    series_id           uuid REFERENCES series (id) ON DELETE SET NULL,
    number_type         text NOT NULL DEFAULT 'unspecified',
    source              text NOT NULL DEFAULT 'unspecified',
    carrier             text NOT NULL DEFAULT '' CHECK (length(carrier) <= 256),
    sip_trunk           text NOT NULL DEFAULT '' CHECK (length(sip_trunk) <= 256),
    billing_reference   text NOT NULL DEFAULT '' CHECK (length(billing_reference) <= 256),
    service_info        text NOT NULL DEFAULT '' CHECK (length(service_info) <= 1024),
    tags                text[] NOT NULL DEFAULT '{}',
    labels              jsonb NOT NULL DEFAULT '{}',
    assignee_kind       text,
    assignee_id         text,
    assignee_name       text,
    assignee_account_id uuid REFERENCES accounts (id),
    reserved_for        text,
    reservation_tag     text,
    reservation_note    text,
    reservation_expire_time timestamptz,
    aging_end_time      timestamptz,
    -- A random key: quantity allocation starts its scan at a random point, so concurrent
    -- allocators spread out and never crawl over the dead index entries at the head of a pool.
    pick                double precision NOT NULL DEFAULT random(),
    version             bigint NOT NULL DEFAULT 1,
    create_time         timestamptz NOT NULL DEFAULT now(),
    update_time         timestamptz NOT NULL DEFAULT now(),
    delete_time         timestamptz,
    -- Status and holder consistency: what must never break, whatever the code does.
    CONSTRAINT numbers_assignee CHECK ((status = 'assigned') = (assignee_id IS NOT NULL AND assignee_kind IS NOT NULL)),
    CONSTRAINT numbers_reservation CHECK (status <> 'reserved' OR reserved_for IS NOT NULL),
    CONSTRAINT numbers_aging CHECK ((status = 'aging') = (aging_end_time IS NOT NULL)),
    CONSTRAINT numbers_aging_with_owner CHECK (status <> 'aging' OR holder_id = provider_id),
    CONSTRAINT numbers_deleted_with_owner CHECK (status <> 'deleted' OR (holder_id = provider_id AND delete_time IS NOT NULL)),
    CONSTRAINT numbers_returned_below_owner CHECK (status <> 'returned' OR holder_id <> provider_id)
);

-- One live number per E.164; a deleted one may be added again.
CREATE UNIQUE INDEX numbers_live_e164 ON numbers (e164) WHERE status <> 'deleted';
CREATE INDEX numbers_e164_history ON numbers (e164, create_time);
CREATE INDEX numbers_holder_path ON numbers (holder_path, e164) WHERE status <> 'deleted';
CREATE INDEX numbers_provider_e164 ON numbers (provider_id, e164) WHERE status <> 'deleted';
CREATE INDEX numbers_available_pick ON numbers (holder_id, pick) WHERE status = 'available';
CREATE INDEX numbers_holder_e164 ON numbers (holder_id, e164) WHERE status <> 'deleted';
CREATE INDEX numbers_series ON numbers (series_id) WHERE series_id IS NOT NULL;
CREATE INDEX numbers_assignee ON numbers (assignee_id) WHERE assignee_id IS NOT NULL;
CREATE INDEX numbers_reservation_expiry ON numbers (reservation_expire_time) WHERE status = 'reserved' AND reservation_expire_time IS NOT NULL;
CREATE INDEX numbers_aging_end ON numbers (aging_end_time) WHERE status = 'aging';

-- Refuse at the last line what the service already refuses: deleting a held or assigned number.
CREATE FUNCTION numbers_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'deleted' AND OLD.status NOT IN ('available', 'aging', 'deleted') THEN
        RAISE EXCEPTION 'number % is % and cannot be deleted', OLD.e164, OLD.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'numbers_delete_unused';
    END IF;
    IF NEW.status = 'deleted' AND OLD.holder_id <> OLD.provider_id THEN
        RAISE EXCEPTION 'number % is held by a sub-account and cannot be deleted', OLD.e164
            USING ERRCODE = 'check_violation', CONSTRAINT = 'numbers_delete_unused';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER numbers_guard_delete BEFORE UPDATE OF status ON numbers
    FOR EACH ROW WHEN (NEW.status = 'deleted') EXECUTE FUNCTION numbers_guard_delete();

CREATE FUNCTION numbers_no_hard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'numbers are deleted by status, never by row: history is kept'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER numbers_no_hard_delete BEFORE DELETE ON numbers
    FOR EACH ROW EXECUTE FUNCTION numbers_no_hard_delete();

-- History and outbox: every change of holder, status, assignee or reservation, written in the
-- same transaction as the change.
CREATE TABLE number_events (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_id     uuid NOT NULL,
    number_id       uuid NOT NULL REFERENCES numbers (id),
    e164            text NOT NULL,
    time            timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor           text NOT NULL,
    actor_account_id uuid,
    request_id      text NOT NULL DEFAULT '',
    operation       text NOT NULL,
    -- The holder's path after the change, so Watch can select an account's subtree.
    holder_path     text COLLATE "C" NOT NULL,
    before          jsonb,
    after           jsonb NOT NULL
);
CREATE INDEX number_events_number ON number_events (number_id, seq);
CREATE INDEX number_events_subtree ON number_events (provider_id, seq);

-- Inventory counters per (account, series, status), striped over slots: a change adds to the
-- slot of its database backend, so concurrent allocations do not queue on one hot row, and a
-- read sums a few rows instead of scanning numbers. Kept by statement-level triggers with
-- transition tables, so a million-row import updates each counter once.
CREATE TABLE inventory_counts (
    provider_id     uuid NOT NULL,
    account_id      uuid NOT NULL,
    -- The nil UUID for numbers in no series.
    series_id       uuid NOT NULL,
    status          text NOT NULL,
    slot            smallint NOT NULL,
    count           bigint NOT NULL,
    PRIMARY KEY (account_id, series_id, status, slot)
);

CREATE FUNCTION inventory_apply(deltas jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO inventory_counts AS c (provider_id, account_id, series_id, status, slot, count)
    SELECT (d->>'p')::uuid, (d->>'a')::uuid, (d->>'s')::uuid, d->>'t', (pg_backend_pid() % 16)::smallint, (d->>'n')::bigint
    FROM jsonb_array_elements(deltas) d
    ORDER BY 2, 3, 4
    ON CONFLICT (account_id, series_id, status, slot) DO UPDATE SET count = c.count + EXCLUDED.count;
$$;

CREATE FUNCTION inventory_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM inventory_apply(coalesce(jsonb_agg(jsonb_build_object('p', p, 'a', a, 's', s, 't', t, 'n', n)), '[]'))
    FROM (SELECT provider_id p, holder_id a, coalesce(series_id, '00000000-0000-0000-0000-000000000000') s, status t, count(*) n
          FROM new_rows WHERE status <> 'deleted' GROUP BY 1, 2, 3, 4) g;
    RETURN NULL;
END $$;

CREATE FUNCTION inventory_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM inventory_apply(coalesce(jsonb_agg(jsonb_build_object('p', p, 'a', a, 's', s, 't', t, 'n', n)), '[]'))
    FROM (SELECT p, a, s, t, sum(n) n FROM (
              SELECT provider_id p, holder_id a, coalesce(series_id, '00000000-0000-0000-0000-000000000000') s, status t, count(*) n
              FROM new_rows WHERE status <> 'deleted' GROUP BY 1, 2, 3, 4
              UNION ALL
              SELECT provider_id, holder_id, coalesce(series_id, '00000000-0000-0000-0000-000000000000'), status, -count(*)
              FROM old_rows WHERE status <> 'deleted' GROUP BY 1, 2, 3, 4) u
          GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0) g;
    RETURN NULL;
END $$;

CREATE TRIGGER inventory_insert AFTER INSERT ON numbers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION inventory_on_insert();
CREATE TRIGGER inventory_update AFTER UPDATE ON numbers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION inventory_on_update();
