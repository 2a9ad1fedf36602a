-- Fewer per-row checks on the paths that write numbers by the thousand (import, allocation).
-- A foreign key checks each row on its own: a lookup and a row lock, about 4 µs a row, which
-- for a million-row import is more than the copy of the rows itself. The same rules are kept,
-- checked with fewer lookups.

-- A number's holder and owner in one check: the holder exists and belongs to the number's
-- provider. This is stricter than the two keys it replaces (holder exists; owner exists): a
-- number can no longer be held by another provider's account. The owner exists because the
-- holder's provider_id references it.
CREATE UNIQUE INDEX accounts_id_provider ON accounts (id, provider_id);
ALTER TABLE numbers
    DROP CONSTRAINT numbers_provider_id_fkey,
    DROP CONSTRAINT numbers_holder_id_fkey,
    ADD CONSTRAINT numbers_holder_of_provider FOREIGN KEY (holder_id, provider_id)
        REFERENCES accounts (id, provider_id);

-- An event's number exists: checked once per statement over all the rows it wrote (one
-- anti-join), not once per row. A foreign key would also lock each number against its
-- deletion; numbers are never deleted (numbers_no_hard_delete, and below, TRUNCATE) and never
-- change id (numbers_fixed_id), so what the check saw stays true.
ALTER TABLE number_events DROP CONSTRAINT number_events_number_id_fkey;
CREATE FUNCTION number_events_of_numbers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM written e WHERE NOT EXISTS (SELECT 1 FROM numbers n WHERE n.id = e.number_id)) THEN
        RAISE EXCEPTION 'an event names a number that does not exist'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'number_events_of_numbers';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER number_events_of_numbers AFTER INSERT ON number_events
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION number_events_of_numbers();
CREATE TRIGGER number_events_of_numbers_update AFTER UPDATE ON number_events
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION number_events_of_numbers();

CREATE FUNCTION numbers_fixed_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a number keeps its id: its events name it'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER numbers_fixed_id BEFORE UPDATE OF id ON numbers
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION numbers_fixed_id();
CREATE TRIGGER numbers_no_truncate BEFORE TRUNCATE ON numbers
    FOR EACH STATEMENT EXECUTE FUNCTION numbers_no_hard_delete();

-- The history of an E.164 (which number carried it when) needs only the deleted numbers
-- indexed: the live one is found through numbers_live_e164. A move no longer adds an entry to
-- an index of every number's E.164.
DROP INDEX numbers_e164_history;
CREATE INDEX numbers_deleted_e164 ON numbers (e164, create_time) WHERE status = 'deleted';
