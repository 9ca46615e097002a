-- Storage measured from what is stored (issue 9 §5 "GB of stored chunks and uploads"; decision
-- 0167, docs/billing.md#quotas): the bytes of each ingestion run's chunks, kept as one total per
-- run by triggers on kijko.chunks, so the storage gauge sums one row per project (its index's
-- run) plus the uploads at each upload and ingestion check, not every chunk.
--
-- Only the triggers write the totals (as the table owner: a member's session can neither raise
-- nor lower them); every statement that inserts or deletes chunks, whoever's session runs it
-- (an ingestion's service session, the system role's sweeper, a project's or run's deletion
-- cascading), moves its run's total by the bytes it inserted or deleted.

CREATE TABLE kijko.run_chunk_bytes (
    organization_id uuid NOT NULL,
    project_id uuid NOT NULL,
    run_id uuid NOT NULL,
    -- octet_length(content) summed over the run's chunks.
    bytes bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    PRIMARY KEY (organization_id, project_id, run_id),
    FOREIGN KEY (organization_id, project_id, run_id)
        REFERENCES kijko.ingestion_runs (organization_id, project_id, id) ON DELETE CASCADE
);

-- The runs' totals as they stand (the chunks' table is read without its row-level security for
-- this one statement: the migration's owner sees every organization's chunks).
ALTER TABLE kijko.chunks NO FORCE ROW LEVEL SECURITY;
INSERT INTO kijko.run_chunk_bytes (organization_id, project_id, run_id, bytes)
SELECT organization_id, project_id, run_id, sum(octet_length(content))
FROM kijko.chunks
GROUP BY organization_id, project_id, run_id;
ALTER TABLE kijko.chunks FORCE ROW LEVEL SECURITY;

ALTER TABLE kijko.run_chunk_bytes ENABLE ROW LEVEL SECURITY;
ALTER TABLE kijko.run_chunk_bytes FORCE ROW LEVEL SECURITY;
CREATE POLICY run_chunk_bytes_tenant ON kijko.run_chunk_bytes
    USING (organization_id = (SELECT kijko.current_org_id()))
    WITH CHECK (organization_id = (SELECT kijko.current_org_id()));
-- The triggers run as the owner, in any session: the system role's (no organization in its
-- context) deletes stray chunks across organizations, and their runs' totals must follow.
CREATE POLICY run_chunk_bytes_triggers ON kijko.run_chunk_bytes TO :owner_role
    USING (true)
    WITH CHECK (true);

GRANT SELECT ON kijko.run_chunk_bytes TO :app_role;
GRANT SELECT ON kijko.run_chunk_bytes TO :system_role;

-- Runs' totals moved by each statement's chunks, one row per run (statement-level: an
-- ingestion's batch of chunks is one INSERT). As the owner, with row-level security applying
-- (the owner's policy above); the transition tables hold exactly the rows the statement wrote,
-- which the chunks' own policies already checked.
CREATE FUNCTION kijko.chunks_add_bytes() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    INSERT INTO kijko.run_chunk_bytes AS b (organization_id, project_id, run_id, bytes)
    SELECT organization_id, project_id, run_id, sum(octet_length(content)) FROM inserted
    GROUP BY organization_id, project_id, run_id
    ORDER BY organization_id, project_id, run_id
    ON CONFLICT (organization_id, project_id, run_id) DO UPDATE SET bytes = b.bytes + EXCLUDED.bytes;
    RETURN NULL;
END
$$;
CREATE FUNCTION kijko.chunks_remove_bytes() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    -- A run deleted with its chunks (a cascade) has no total left to lower: nothing to update.
    UPDATE kijko.run_chunk_bytes b
    SET bytes = greatest(b.bytes - d.bytes, 0)
    FROM (SELECT organization_id, project_id, run_id, sum(octet_length(content)) AS bytes FROM deleted
          GROUP BY organization_id, project_id, run_id) AS d
    WHERE b.organization_id = d.organization_id AND b.project_id = d.project_id AND b.run_id = d.run_id;
    RETURN NULL;
END
$$;
-- Chunks are written once (the app role cannot update them); an operator's UPDATE as the system
-- role still moves the totals by the difference.
CREATE FUNCTION kijko.chunks_move_bytes() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    UPDATE kijko.run_chunk_bytes b
    SET bytes = greatest(b.bytes + d.bytes, 0)
    FROM (SELECT organization_id, project_id, run_id, sum(bytes) AS bytes
          FROM (SELECT organization_id, project_id, run_id, octet_length(content)::bigint AS bytes FROM inserted
                UNION ALL
                SELECT organization_id, project_id, run_id, -octet_length(content)::bigint FROM deleted) AS moved
          GROUP BY organization_id, project_id, run_id) AS d
    WHERE b.organization_id = d.organization_id AND b.project_id = d.project_id AND b.run_id = d.run_id;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION kijko.chunks_add_bytes(), kijko.chunks_remove_bytes(), kijko.chunks_move_bytes()
    FROM PUBLIC;
CREATE TRIGGER chunks_add_bytes AFTER INSERT ON kijko.chunks
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION kijko.chunks_add_bytes();
CREATE TRIGGER chunks_remove_bytes AFTER DELETE ON kijko.chunks
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION kijko.chunks_remove_bytes();
CREATE TRIGGER chunks_move_bytes AFTER UPDATE ON kijko.chunks
    REFERENCING OLD TABLE AS deleted NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION kijko.chunks_move_bytes();
