-- Calls, their recordings, the audit log and the embedded job queue.
-- Applied by `cj migrate` inside one transaction; see cj/db/migrate.py.

CREATE TABLE calls (
    uuid                   uuid PRIMARY KEY,
    source                 text        NOT NULL DEFAULT '',
    caller_number          text        NOT NULL,
    -- Digits of the number, reversed: a suffix search becomes an index prefix scan.
    caller_digits_rev      text        NOT NULL,
    caller_name            text        NOT NULL DEFAULT '',
    destination_number     text        NOT NULL,
    destination_digits_rev text        NOT NULL,
    direction              text        NOT NULL DEFAULT 'unknown'
        CHECK (direction IN ('inbound', 'outbound', 'internal', 'unknown')),
    started_at             timestamptz NOT NULL,
    answered_at            timestamptz CHECK (answered_at >= started_at),
    ended_at               timestamptz CHECK (ended_at >= started_at),
    duration_s             integer     NOT NULL DEFAULT 0 CHECK (duration_s >= 0),
    billsec                integer     NOT NULL DEFAULT 0 CHECK (billsec >= 0),
    hangup_cause           text        NOT NULL DEFAULT '',
    hangup_side            text        NOT NULL DEFAULT '',
    sip_code               integer     CHECK (sip_code BETWEEN 100 AND 699),
    private                boolean     NOT NULL DEFAULT false,
    recording_name         text,
    raw                    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- Interval search and the "newest first" order of every search (keyset on started_at, uuid).
CREATE INDEX calls_started_at_idx ON calls (started_at, uuid);
-- Phone search: prefix of reversed digits (text_pattern_ops: byte-wise ~>=~ / ~<~ range
-- scans that stay index-friendly under generic plans), then the time window.
CREATE INDEX calls_caller_digits_idx ON calls (caller_digits_rev text_pattern_ops, started_at);
CREATE INDEX calls_destination_digits_idx
    ON calls (destination_digits_rev text_pattern_ops, started_at);

CREATE TABLE recordings (
    call_uuid        uuid PRIMARY KEY REFERENCES calls (uuid) ON DELETE CASCADE,
    status           text        NOT NULL
        CHECK (status IN ('uploaded', 'encoding', 'stored', 'failed', 'purged')),
    -- The uploaded original (WAV) while it is kept in temporary storage.
    original_name    text        NOT NULL,
    original_size    bigint      NOT NULL CHECK (original_size >= 0),
    original_sha256  text        NOT NULL CHECK (original_sha256 ~ '^[0-9a-f]{64}$'),
    original_storage text,
    original_key     text,
    -- The encoded MP3 in permanent storage, once stored.
    storage          text,
    key              text,
    size             bigint CHECK (size >= 0),
    sha256           text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type     text,
    duration_ms      integer CHECK (duration_ms >= 0),
    sample_rate      integer CHECK (sample_rate > 0),
    channels         integer CHECK (channels > 0),
    -- Encoding bookkeeping: attempts so far, why the last one failed, and until when
    -- the current encoder holds it (the reconciler re-queues expired leases).
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    stored_at        timestamptz,
    CHECK (status <> 'stored' OR (storage IS NOT NULL AND key IS NOT NULL AND sha256 IS NOT NULL))
);

CREATE INDEX recordings_pending_idx ON recordings (updated_at)
    WHERE status IN ('uploaded', 'encoding');
CREATE INDEX recordings_failed_idx ON recordings (updated_at) WHERE status = 'failed';

-- Who tried to do what to which call (downloads, allowed or refused).
CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    call_uuid uuid,
    result    text        NOT NULL,
    detail    jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_log_call_idx ON audit_log (call_uuid, at);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- The embedded job queue (queue.kind = "postgres"); NSQ deployments leave it empty.
CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    topic        text        NOT NULL,
    body         bytea       NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    available_at timestamptz NOT NULL DEFAULT now(),
    lease_token  uuid,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_ready_idx ON jobs (topic, available_at, id);
