-- Downloads in progress stop when their call turns private or their recording goes away,
-- and the audit log records every download attempt without growing with a flood.

-- Where an attempt came from (IP address, no port), and how many attempts one row stands
-- for. Aggregated rows (refused authentication, limits) carry the minute they count in:
-- one row per action, actor, address, result and minute, whatever the flood.
ALTER TABLE audit_log
    ADD COLUMN address text    NOT NULL DEFAULT '',
    ADD COLUMN count   integer NOT NULL DEFAULT 1 CHECK (count > 0),
    ADD COLUMN minute  timestamptz;

CREATE UNIQUE INDEX audit_log_aggregate_idx
    ON audit_log (action, actor, address, result, minute) WHERE minute IS NOT NULL;

-- Every cj-api process LISTENs on this channel; the payload is '<reason>:<call uuid>'.
-- Notifications are sent at commit, so a listener never hears of a change it cannot see.
CREATE FUNCTION cj_notify_download_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'calls' THEN
        PERFORM pg_notify('cj_download_revoked',
                          (CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE 'private' END)
                          || ':' || OLD.uuid::text);
    ELSE
        PERFORM pg_notify('cj_download_revoked',
                          (CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE 'purged' END)
                          || ':' || OLD.call_uuid::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER calls_private_revokes_downloads
    AFTER UPDATE OF private ON calls
    FOR EACH ROW WHEN (NEW.private AND NOT OLD.private)
    EXECUTE FUNCTION cj_notify_download_revoked();

CREATE TRIGGER calls_delete_revokes_downloads
    AFTER DELETE ON calls
    FOR EACH ROW EXECUTE FUNCTION cj_notify_download_revoked();

CREATE TRIGGER recordings_purge_revokes_downloads
    AFTER UPDATE OF status ON recordings
    FOR EACH ROW WHEN (NEW.status = 'purged' AND OLD.status <> 'purged')
    EXECUTE FUNCTION cj_notify_download_revoked();

CREATE TRIGGER recordings_delete_revokes_downloads
    AFTER DELETE ON recordings
    FOR EACH ROW EXECUTE FUNCTION cj_notify_download_revoked();
