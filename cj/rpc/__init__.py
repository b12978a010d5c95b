"""`cj.rpc`: our thin layer over purerpc (gRPC on Trio).

Server (cj_api):

    servicer = MyServicer()           # subclass of cj.proto.calljournal_grpc.CallJournalServicer,
                                      # each method decorated with @requires(Role.…)
    await nursery.start(functools.partial(
        serve_grpc, [servicer.service], host=cfg.host, port=cfg.grpc_port,
        ssl_context=make_server_ssl_context(cert, key) if cert else None,
        authenticator=Authenticator(settings.auth),
        limits=grpc_limits(cfg), grace_period_s=cfg.grace_period_s,
        on_auth_failure=audit_refusal,  # optional: AuthFailure(method, peer, error)
        shutdown_trigger=stop_event.wait))

Handlers raise `cj.errors.ServiceError` for failures the client should see, and call
`current_principal()` to know who is calling.

Client (cj_agent, tests): `open_channel(...)` then `CallJournalClient(channel)` or the
generic `Channel.unary_unary / stream_unary / unary_stream`; failures are `RpcError`
(`RpcUnavailable` for connection problems).
"""

from cj.rpc.access import AuthRefusal, current_peer_address, current_principal, requires
from cj.rpc.client import Channel, RpcError, RpcUnavailable, open_channel
from cj.rpc.journal import CHUNK_SIZE, CallJournalClient, file_chunks
from cj.rpc.limits import GrpcLimits
from cj.rpc.server import AuthFailure, GrpcServer, serve_grpc
from cj.rpc.tls import make_client_ssl_context, make_server_ssl_context

__all__ = [
    "CHUNK_SIZE",
    "AuthFailure",
    "AuthRefusal",
    "CallJournalClient",
    "Channel",
    "GrpcLimits",
    "GrpcServer",
    "RpcError",
    "RpcUnavailable",
    "current_peer_address",
    "current_principal",
    "file_chunks",
    "make_client_ssl_context",
    "make_server_ssl_context",
    "open_channel",
    "requires",
    "serve_grpc",
]
