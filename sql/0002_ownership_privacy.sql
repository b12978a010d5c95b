-- Ownership and sticky privacy (DESIGN.md §9).
--
-- A call belongs to the source that first stored it: `calls.source`, which ingest never
-- changes afterwards (cj/db/calls.py). Rows stored before this migration keep the source
-- they have (until now cj-api filled an empty source with the token's name, so they
-- carry their agent's source or token name; give that token the name in
-- `auth.tokens[].sources`). A row with an empty source, which only a tool writing to the
-- database directly could have made, belongs to no token: no agent can change it,
-- attach audio to it or see it with CheckCalls; readers still find it and an admin can
-- still change its privacy. Nothing is rewritten here: who owns an old row is exactly
-- what was stored.

-- Every change of a call's privacy is audited, in the same transaction as the change,
-- whoever makes it: cj-api and `cj` say who and why with the transaction-local
-- settings cj.actor and cj.reason (cj.db.audit.set_audit_context); a change made with
-- plain SQL is recorded as actor 'sql:<database user>'.
CREATE FUNCTION calls_audit_privacy() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (actor, action, call_uuid, result, detail)
    VALUES (
        coalesce(nullif(current_setting('cj.actor', true), ''), 'sql:' || session_user),
        'privacy',
        NEW.uuid,
        CASE WHEN NEW.private THEN 'private' ELSE 'public' END,
        jsonb_build_object(
            'private', NEW.private,
            'was_private', OLD.private,
            'reason', coalesce(nullif(current_setting('cj.reason', true), ''), 'sql'),
            'source', NEW.source
        )
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER calls_privacy_audit
    AFTER UPDATE OF private ON calls
    FOR EACH ROW
    WHEN (OLD.private IS DISTINCT FROM NEW.private)
    EXECUTE FUNCTION calls_audit_privacy();
