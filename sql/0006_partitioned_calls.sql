-- Calls partitioned by month of started_at (UTC), issue 17; docs/scaling.md.
--
-- `calls` becomes a range-partitioned table: one partition per month named
-- calls_YYYY_MM, plus calls_default for what no month partition covers. Searches filter
-- and order on started_at, so an interval search reads only its months, and retention of
-- old CDRs drops whole months (`cj purge --cdr-older-than`, cj/db/partitions.py).
--
-- A unique index of a partitioned table must contain the partition key, so the primary
-- key becomes (uuid, started_at); what keeps a uuid unique across months, and what
-- recordings reference, is `call_keys` (uuid PRIMARY KEY, started_at): one narrow row a
-- call, kept in step with `calls` by the triggers below whoever writes (ingest, COPY,
-- plain SQL). Ingest locks the key first and moves a call whose started_at was corrected
-- (cj/db/calls.py), so a CDR re-sent with another start never makes a second row.
--
-- Partitions are made ahead (cj_calls_maintain: on migrate, when cj-api starts and
-- hourly) and on demand by ingest for a month that has none (cj_calls_create_partition).
-- Nothing is ever rejected: a call of a month without a partition (odd dates before
-- 2000 or more than a year ahead stay there for good) lands in calls_default, and
-- creating a month's partition moves that month's rows out of the default first (a
-- default partition holding rows of the new range would make CREATE ... PARTITION OF
-- fail).
--
-- This migration copies every row into the new table inside its one transaction: calls
-- is locked (reads and writes wait) while it runs; docs/operations.md gives the time
-- measured on a million calls (bench/partition_migrate.py).

-- Transaction-local switch for bulk partition work (moving rows out of the default,
-- dropping a month): rows moved or dropped there are not deletions of calls.
CREATE FUNCTION cj_partition_maintenance() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('cj.partition_maintenance', true), '') = 'on'
$$;

ALTER TABLE recordings DROP CONSTRAINT recordings_call_uuid_fkey;
ALTER TABLE calls RENAME TO calls_legacy;

CREATE TABLE calls (LIKE calls_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)
    PARTITION BY RANGE (started_at);
CREATE TABLE calls_default PARTITION OF calls DEFAULT;

CREATE TABLE call_keys (
    uuid       uuid PRIMARY KEY,
    started_at timestamptz NOT NULL
);

-- The month partition for `at`: its name and bounds [lo, hi), in UTC.
CREATE FUNCTION cj_calls_month(at timestamptz, OUT name text, OUT lo timestamptz,
                               OUT hi timestamptz)
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'calls_' || to_char(date_trunc('month', at AT TIME ZONE 'UTC'), 'YYYY_MM'),
           date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
$$;

-- Make the month partition of `at` unless it exists or the month is odd (before 2000 or
-- more than a year ahead: those calls stay in calls_default). True when it was made.
-- Serialised by an advisory lock, so concurrent cj-api processes never race.
CREATE FUNCTION cj_calls_create_partition(at timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    m record;
BEGIN
    SELECT * INTO m FROM cj_calls_month(at);
    IF m.lo < '2000-01-01 00:00:00+00' OR m.lo > now() + interval '1 year' THEN
        RETURN false;
    END IF;
    IF to_regclass(m.name) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(1128943681);  -- "CJPA"
    -- Asked of pg_class, not to_regclass: the syscache behind to_regclass may predate
    -- the commit of the process that held the lock (an advisory lock makes no backend
    -- read the catalog's invalidations), while this statement takes a fresh snapshot.
    IF EXISTS (SELECT 1 FROM pg_class WHERE relname = m.name
                AND relnamespace = to_regnamespace(current_schema())) THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM calls_default WHERE started_at >= m.lo AND started_at < m.hi) THEN
        -- Move the month's rows out of the default, then attach: the rows never leave
        -- `calls` as far as any other transaction can see (all of it commits at once).
        PERFORM set_config('cj.partition_maintenance', 'on', true);
        EXECUTE format('CREATE TABLE %I (LIKE calls INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                       'INCLUDING STORAGE)', m.name);
        EXECUTE format('WITH moved AS (DELETE FROM calls_default WHERE started_at >= $1 '
                       'AND started_at < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
                       m.name) USING m.lo, m.hi;
        EXECUTE format('ALTER TABLE calls ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       m.name, m.lo, m.hi);
        PERFORM set_config('cj.partition_maintenance', '', true);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF calls FOR VALUES FROM (%L) TO (%L)',
                       m.name, m.lo, m.hi);
    END IF;
    RETURN true;
EXCEPTION WHEN duplicate_table THEN
    RETURN false;  -- made meanwhile by another process (the check above is the rule)
END
$$;

-- Partitions from last month to `ahead` months ahead, and one for every month that has
-- rows in calls_default (a backfill of old CDRs); the number of partitions made.
CREATE FUNCTION cj_calls_maintain(ahead integer DEFAULT 3) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    made integer := 0;
    month timestamptz;
BEGIN
    FOR month IN
        SELECT generate_series(now() - interval '1 month', now() + make_interval(months => ahead),
                               interval '1 month')
        UNION
        SELECT DISTINCT (cj_calls_month(started_at)).lo FROM calls_default
        ORDER BY 1
    LOOP
        IF cj_calls_create_partition(month) THEN
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END
$$;

-- Copy the calls over: partitions first (no index yet: the indexes are built once the
-- rows are in, which is much faster than maintaining them row by row).
SELECT cj_calls_create_partition(month)
  FROM (SELECT DISTINCT date_trunc('month', started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
          FROM calls_legacy) AS months (month);
SELECT cj_calls_maintain();

INSERT INTO calls SELECT * FROM calls_legacy;
INSERT INTO call_keys (uuid, started_at) SELECT uuid, started_at FROM calls_legacy;
DROP TABLE calls_legacy;

ALTER TABLE calls ADD PRIMARY KEY (uuid, started_at);
CREATE INDEX calls_started_at_idx ON calls (started_at, uuid);
CREATE INDEX calls_caller_digits_idx ON calls (caller_digits_rev text_pattern_ops, started_at);
CREATE INDEX calls_destination_digits_idx
    ON calls (destination_digits_rev text_pattern_ops, started_at);
CREATE INDEX calls_caller_extension_idx ON calls (lower(caller_extension), started_at);
CREATE INDEX calls_destination_extension_idx
    ON calls (lower(destination_extension), started_at);

-- A recording hangs off its call's key: deleting the key (a call deleted, a month of
-- CDRs purged) deletes the recording row.
ALTER TABLE recordings ADD CONSTRAINT recordings_call_uuid_fkey
    FOREIGN KEY (call_uuid) REFERENCES call_keys (uuid) ON DELETE CASCADE;

-- call_keys follows calls. A new call adds its key; a call whose key names another start
-- is a duplicate unless that row is gone (a cross-partition UPDATE is a DELETE and an
-- INSERT, and AFTER triggers run once both are done).
CREATE FUNCTION calls_key_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    known timestamptz;
BEGIN
    IF cj_partition_maintenance() THEN
        RETURN NULL;
    END IF;
    -- The conflict check always goes through the primary key, whatever the plan cache
    -- thinks of the table's size (a plan made while call_keys was empty is a sequential
    -- scan, and stays one through a COPY of millions of rows).
    INSERT INTO call_keys (uuid, started_at) VALUES (NEW.uuid, NEW.started_at)
        ON CONFLICT (uuid) DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    -- Rare: planned afresh each time, with what the table holds now.
    EXECUTE 'SELECT started_at FROM call_keys WHERE uuid = $1' INTO known USING NEW.uuid;
    IF known IS DISTINCT FROM NEW.started_at THEN
        IF EXISTS (SELECT 1 FROM calls WHERE uuid = NEW.uuid AND started_at = known) THEN
            RAISE EXCEPTION 'call % is already stored with started_at %', NEW.uuid, known
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'call_keys_pkey';
        END IF;
        UPDATE call_keys SET started_at = NEW.started_at WHERE uuid = NEW.uuid;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION calls_key_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE call_keys SET started_at = NEW.started_at WHERE uuid = NEW.uuid;
    RETURN NULL;
END
$$;

-- A deleted call (not one moved to another month) takes its key, and so its recording
-- row, with it, and stops its downloads.
CREATE FUNCTION calls_key_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF cj_partition_maintenance() OR EXISTS (SELECT 1 FROM calls WHERE uuid = OLD.uuid) THEN
        RETURN NULL;
    END IF;
    DELETE FROM call_keys WHERE uuid = OLD.uuid;
    PERFORM pg_notify('cj_download_revoked', 'deleted:' || OLD.uuid::text);
    RETURN NULL;
END
$$;

-- Row triggers on a partitioned table are cloned to every partition, where TG_TABLE_NAME
-- is the partition's name: tell calls from recordings by the latter.
CREATE OR REPLACE FUNCTION cj_notify_download_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF cj_partition_maintenance() THEN
        RETURN NULL;  -- a month of CDRs dropped: its recordings were purged before
    END IF;
    IF TG_TABLE_NAME = 'recordings' THEN
        PERFORM pg_notify('cj_download_revoked',
                          (CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE 'purged' END)
                          || ':' || OLD.call_uuid::text);
    ELSE
        PERFORM pg_notify('cj_download_revoked',
                          (CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE 'private' END)
                          || ':' || OLD.uuid::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER calls_key_insert AFTER INSERT ON calls
    FOR EACH ROW EXECUTE FUNCTION calls_key_inserted();
CREATE TRIGGER calls_key_update AFTER UPDATE OF started_at ON calls
    FOR EACH ROW WHEN (OLD.started_at IS DISTINCT FROM NEW.started_at)
    EXECUTE FUNCTION calls_key_updated();
CREATE TRIGGER calls_key_delete AFTER DELETE ON calls
    FOR EACH ROW EXECUTE FUNCTION calls_key_deleted();

CREATE TRIGGER calls_privacy_audit
    AFTER UPDATE OF private ON calls
    FOR EACH ROW
    WHEN (OLD.private IS DISTINCT FROM NEW.private)
    EXECUTE FUNCTION calls_audit_privacy();

CREATE TRIGGER calls_private_revokes_downloads
    AFTER UPDATE OF private ON calls
    FOR EACH ROW WHEN (NEW.private AND NOT OLD.private)
    EXECUTE FUNCTION cj_notify_download_revoked();

ANALYZE calls;
ANALYZE call_keys;
