-- The live numbers' unique E.164 index, in the pattern operators' order (byte order, as the
-- column's collation C sorts): a provider's or a holder's page, asked for in the column's own
-- order, can then only be read in order from its scope's index, never from this one filtering
-- by scope. The planner costs such a read as if the scope's numbers were spread evenly through
-- the E.164s; they come in blocks, and a provider whose block came last under a prefix shared
-- with others read every other block first. Statements over every number or a subtree ask for
-- this order (`ORDER BY e164 USING ~<~`, ranges with `~>=~` and `~<~`) unless they include
-- deleted numbers, which this index does not hold; equality lookups (`e164 = $1`, `= ANY`) use
-- it as before.
DROP INDEX numbers_live_e164;
CREATE UNIQUE INDEX numbers_live_e164 ON numbers (e164 text_pattern_ops) WHERE status <> 'deleted';

-- A subtree's page asks for the same order, with its prefix and cursor in the same operators:
-- the subtree's index keeps taking them as bounds within each holder path.
DROP INDEX numbers_holder_path;
CREATE INDEX numbers_holder_path ON numbers (holder_path, e164 text_pattern_ops) WHERE status <> 'deleted';
