-- Full-text search over a project's chunks (issue 7 §3; decision 0080, docs/search.md).
-- requires: kijko:0014
--
-- Code is not prose: stemming turns identifiers into nonsense and stop words drop `if`,
-- `for`, `not`. The configuration is `simple` (lower-case, no stemming, no stop words); the
-- identifiers are split before PostgreSQL's parser sees them, by kijko.code_words, which the
-- indexed column and every query both go through, so the two always agree.

CREATE TEXT SEARCH CONFIGURATION kijko.code (COPY = pg_catalog.simple);

-- Identifiers split into their words, lower-cased: `parseConfig`, `ParseConfig`, `parse_config`
-- and `parse-config` all become `parse_config`, which the parser reads as the two words
-- `parse`, `config` side by side (it treats `_` as a separator), so a query for any spelling
-- is the phrase parse <-> config. Also split: `HTTPServer` → `http_server`, `os.path.join`,
-- `src/app/main.py`. A `-`, `.` or `/` is only a separator between two letters or digits: a
-- query's leading `-` (exclusion) and its quotes are left to websearch_to_tsquery.
CREATE FUNCTION kijko.code_words(input text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN lower(
    regexp_replace(
        regexp_replace(
            regexp_replace(input, '([[:lower:][:digit:]])([[:upper:]])', '\1_\2', 'g'),
            '([[:upper:]])([[:upper:]][[:lower:]])', '\1_\2', 'g'),
        '([[:alnum:]])[./-](?=[[:alnum:]])', '\1_', 'g'));

-- Whole identifiers too, lower-cased, so a query typed as one word finds them:
-- kijko.code_identifiers joins a symbol's parts (`parse_config`, `parseConfig` →
-- `parseconfig`); kijko.code_compounds lists the words of a text that have a case boundary
-- inside (`JavaScript`, `GitHub`, `getHTTPResponse` → `javascript github gethttpresponse`),
-- which code_words splits: without them `javascript` would not find `JavaScript`. They go
-- after the text, so phrases keep their positions. (Joining every identifier of the content
-- measured +50 % at write time; the words with a case boundary, ~+10 %: decision 0082.)
CREATE FUNCTION kijko.code_identifiers(input text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN lower(regexp_replace(input, '([[:alnum:]])[_./-]+(?=[[:alnum:]])', '\1', 'g'));

CREATE FUNCTION kijko.code_compounds(input text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN coalesce(
    (SELECT string_agg(lower(m[1]), ' ')
     FROM regexp_matches(
         input,
         '([[:alnum:]]*(?:[[:lower:][:digit:]][[:upper:]]|[[:upper:]][[:upper:]][[:lower:]])[[:alnum:]]*)',
         'g') AS m),
    '');

-- All three evaluate inside the generated column below, so whoever writes chunks runs them.
REVOKE EXECUTE ON FUNCTION kijko.code_words(text), kijko.code_identifiers(text), kijko.code_compounds(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kijko.code_words(text), kijko.code_identifiers(text), kijko.code_compounds(text)
    TO :app_role, :system_role;

-- Symbol (A) above path (B) above content (D) when ranking (ts_rank's weights 1.0, 0.4, 0.1).
-- Only the first 100,000 characters of a chunk are indexed: chunks are token windows far
-- smaller than that, and a tsvector cannot exceed 1 MB (an oversized chunk must not make
-- a whole batch fail). Writers never name this column; they list the others.
ALTER TABLE kijko.chunks ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('kijko.code'::regconfig,
        kijko.code_words(coalesce(symbol, '')) || ' ' || kijko.code_identifiers(coalesce(symbol, ''))), 'A')
    || setweight(to_tsvector('kijko.code'::regconfig, kijko.code_words(path)), 'B')
    || setweight(to_tsvector('kijko.code'::regconfig,
        kijko.code_words(left(content, 100000)) || ' ' || kijko.code_compounds(left(content, 100000))), 'D')
) STORED;

CREATE INDEX chunks_search_idx ON kijko.chunks USING gin (search);
