-- A provider's deleted numbers in E.164 order (the id breaks ties: deleted numbers share
-- E.164s). The only index that held them in order was every provider's (`numbers_deleted_e164`),
-- and a provider's page of deleted numbers read it filtering by provider: every deleted number
-- before the provider's. A number is entered here only when it is deleted; no other write
-- touches this index.
CREATE INDEX numbers_deleted_provider ON numbers (provider_id, e164, id) WHERE status = 'deleted';
