-- Legal holds: calls whose recordings retention must never purge, each with why and who.
-- No foreign key to calls on purpose: a hold may be placed on a uuid whose call is still
-- to arrive (a backfill), and it must outlive anything done to the calls table.
CREATE TABLE legal_holds (
    call_uuid  uuid PRIMARY KEY,
    reason     text        NOT NULL CHECK (length(btrim(reason)) > 0),
    held_by    text        NOT NULL,
    held_at    timestamptz NOT NULL DEFAULT now()
);
