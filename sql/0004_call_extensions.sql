-- The extension or SIP login behind each side of a call (DESIGN §10): "1001", "dan".
-- The number presented stays in caller_number / destination_number; a phone search
-- also matches these, exactly and case-insensitively (lower()), within the time window.
ALTER TABLE calls
    ADD COLUMN caller_extension      text NOT NULL DEFAULT '',
    ADD COLUMN destination_extension text NOT NULL DEFAULT '';

CREATE INDEX calls_caller_extension_idx ON calls (lower(caller_extension), started_at);
CREATE INDEX calls_destination_extension_idx
    ON calls (lower(destination_extension), started_at);
