"""Pausing and resuming a charging session's state as the allocator decides.

The session lifecycle belongs to energy.load.sessions (the OCPP side); until that module offers
`session_pause_set`, this is the allocator's one write to a session: the state only, between
active and suspended, and never on a session that has ended or not started.
"""

from __future__ import annotations

from energy.load.models import ChargingSession


def session_pause_set(session: ChargingSession, paused: bool) -> bool:
    """active → suspended (paused) or suspended → active; True when the state moved."""
    source, target = (
        (ChargingSession.State.ACTIVE, ChargingSession.State.SUSPENDED)
        if paused
        else (ChargingSession.State.SUSPENDED, ChargingSession.State.ACTIVE)
    )
    moved = ChargingSession.objects.filter(pk=session.pk, state=source).update(state=target) == 1
    if moved:
        session.state = target
    return moved
