"""What a console and a worker settle before they touch the fleet: which key they sign
with, and whether the broker is one a fleet may use.

A broker that lets a client without credentials in lets anyone who reaches it ask for
agents and read what they print; a console or worker refuses to run there unless the
operator says ``--insecure-broker``, and then says so on every start. Signatures still
hold on such a broker (nothing unsigned or from an untrusted key is obeyed), but its
streams, claims and presence records are open to everyone.
"""

from __future__ import annotations

from pathlib import Path

from chump_tui.fleet.broker import Broker, FleetError
from chump_tui.fleet.identity import Identity, load_identity, own_identity
from chump_tui.safe_fs import real_dir


def fleet_identity(creds: Path | None, own_key: Path) -> Identity:
    """The key this process signs with: the seed in ``--nats-creds`` (an nkey seed file or
    a ``.creds`` file), else its own key file, made (0600) the first time."""
    if creds is not None:
        return load_identity(creds)
    for directory in (own_key.parent.parent, own_key.parent):
        directory.mkdir(mode=0o700, exist_ok=True)
        real_dir(directory)
    return own_identity(own_key)


def broker_check(broker: Broker, insecure: bool) -> list[str]:
    """The lines to say at start; FleetError when the broker admits clients without
    credentials and ``insecure`` (``--insecure-broker``) was not given."""
    found = broker.anonymous_admitted()
    if found is None:
        return []
    if not insecure:
        raise FleetError(
            f"{broker.where}: {found}: anyone who reaches it could read the agents' output "
            "and take or block gaps. Give the fleet identities (chump-tui fleet init; "
            "README 'Across machines'), or pass --insecure-broker to run anyway")
    return [f"WARNING --insecure-broker: {broker.where}: {found}; requests and reports are "
            "still signed and checked, but anyone who reaches the broker can read the "
            "streams, take claims and fill the queue"]
