-- The series a number of a provider belongs to: the one with the longest prefix that matches
-- it. One definition for every statement that files numbers (adding one, importing many,
-- re-filing when a series comes or goes).
--
-- A set-returning SQL function of one SELECT, not a scalar one: PostgreSQL inlines it where it
-- is used (FROM series_of(...), or a scalar subquery over it), so an import of a million rows
-- plans it as the correlated index probe it always was, with no function call per row.
CREATE FUNCTION series_of(provider uuid, e164 text) RETURNS SETOF uuid
    LANGUAGE sql STABLE ROWS 1
AS $$
    SELECT s.id FROM series s
    WHERE s.provider_id = provider AND starts_with(e164, s.prefix)
    ORDER BY length(s.prefix) DESC
    LIMIT 1
$$;
