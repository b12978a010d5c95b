"""TLS contexts for gRPC: HTTP/2 negotiated by ALPN, as standard gRPC clients require.

grpcio and grpc-go refuse a TLS server that does not select `h2` through ALPN, so the
server context must offer it; ours offers only `h2` (gRPC has no HTTP/1 fallback).
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["make_client_ssl_context", "make_server_ssl_context"]

ALPN = ["h2"]


def make_server_ssl_context(cert_file: Path | str, key_file: Path | str) -> ssl.SSLContext:
    """A server context from a PEM certificate chain and its private key.

    Raises ValueError naming the files when they cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # HTTP/2 requires TLS 1.2 or newer
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot load the TLS certificate {cert_file} with key {key_file}: {exc}"
        ) from exc
    context.set_alpn_protocols(ALPN)
    return context


def make_client_ssl_context(ca_file: Path | str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server against `ca_file` (PEM), else the
    system's trust store, and negotiates `h2`.

    Raises ValueError naming the file when it cannot be loaded.
    """
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if ca_file is None else str(ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS CA file {ca_file}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN)
    return context
