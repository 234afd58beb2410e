"""Agents on many hosts over NATS JetStream: the wire format, the broker connection, the
worker (``chump-tui worker``) and the remote side of the spawner seam the engine drives.

Nothing here is imported without ``--nats`` or the ``worker`` subcommand.
"""
