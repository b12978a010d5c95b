"""cj_agent: the PBX agent (DESIGN §2). Watches the directories where a PBX writes CDRs
and recordings, uploads each call over gRPC (retrying while the server is away), and
only then deletes or archives the files; `cj-agent backfill` imports an archive.

    agent = await nursery.start(functools.partial(serve, settings, shutdown=event))
"""

from cj_agent.service import Agent, AgentConfigError, serve

__all__ = ["Agent", "AgentConfigError", "serve"]
