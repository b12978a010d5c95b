#!/bin/sh
# SeaweedFS as the S3 server of docker compose (the chrislusf/seaweedfs image).
#
# The S3 credentials come from the environment — the same variables Call Journal's
# S3 storage reads from docker/calljournal.env — so they are written in one place:
#   CJ_STORAGE_BACKENDS_RECORDINGS_ACCESS_KEY_ID, CJ_STORAGE_BACKENDS_RECORDINGS_SECRET_ACCESS_KEY
# They become SeaweedFS's S3 identities file, and every request must be signed with them
# (SigV4), as with AWS.
#
# Overridable for running it outside the container (tests): WEED (the binary),
# SEAWEEDFS_DIR (data, default /data), SEAWEEDFS_IP (the address the servers announce
# to each other, default the compose service name), SEAWEEDFS_BIND (default 0.0.0.0),
# SEAWEEDFS_S3_PORT (default 8333).
# Extra arguments are passed on to `weed server`. Off: the Iceberg and Lance catalog
# servers (unused) and usage statistics sent to seaweedfs.com.
set -eu

key="${CJ_STORAGE_BACKENDS_RECORDINGS_ACCESS_KEY_ID:-}"
secret="${CJ_STORAGE_BACKENDS_RECORDINGS_SECRET_ACCESS_KEY:-}"
if [ -z "$key" ] || [ -z "$secret" ]; then
    echo "seaweedfs-start: set CJ_STORAGE_BACKENDS_RECORDINGS_ACCESS_KEY_ID and" \
         "CJ_STORAGE_BACKENDS_RECORDINGS_SECRET_ACCESS_KEY (docker/calljournal.env)" >&2
    exit 2
fi
# Written into JSON below without escaping: refuse anything that would need it.
case "$key$secret" in
    *[!A-Za-z0-9._~+/=-]*)
        echo "seaweedfs-start: the S3 key and secret may hold only letters, digits and ._~+/=-" >&2
        exit 2
        ;;
esac

data="${SEAWEEDFS_DIR:-/data}"
config="$data/s3-identities.json"
mkdir -p "$data"
umask 077
cat > "$config" <<EOF
{
  "identities": [
    {
      "name": "calljournal",
      "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF

exec "${WEED:-weed}" server \
    -dir="$data" \
    -ip="${SEAWEEDFS_IP:-seaweedfs}" \
    -ip.bind="${SEAWEEDFS_BIND:-0.0.0.0}" \
    -master.volumeSizeLimitMB=1024 \
    -volume.max=0 \
    -s3 \
    -s3.port="${SEAWEEDFS_S3_PORT:-8333}" \
    -s3.config="$config" \
    -s3.port.iceberg=0 \
    -s3.port.lance=0 \
    -master.telemetry=false \
    "$@"
