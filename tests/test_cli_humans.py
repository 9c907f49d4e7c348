"""`kaito status`'s timeline: each phase with how long it took, and apply->Ready, from `status.phases` alone."""

from __future__ import annotations

from kaito.cli_humans import format_duration, timeline_lines


def test_a_ready_workspace_reads_as_its_phases_and_total() -> None:
    phases = [
        {"name": "planned", "startedAt": "2025-05-01T12:00:00Z", "endedAt": "2025-05-01T12:00:00Z"},
        {"name": "nodesProvisioned", "startedAt": "2025-05-01T12:00:00Z", "endedAt": "2025-05-01T12:01:02Z"},
        {"name": "nodesReady", "startedAt": "2025-05-01T12:01:02Z", "endedAt": "2025-05-01T12:02:10Z"},
        {"name": "modelPulled", "startedAt": "2025-05-01T12:02:20Z", "endedAt": "2025-05-01T12:03:00Z"},
        {"name": "engineStarted", "startedAt": "2025-05-01T12:03:00Z", "endedAt": "2025-05-01T12:03:01Z"},
        {"name": "firstReady", "startedAt": "2025-05-01T12:03:01Z", "endedAt": "2025-05-01T12:03:31Z"},
    ]
    assert timeline_lines(phases) == [
        "timeline: planned 0s → nodes provisioned +1m02s → nodes ready +1m08s → model pulled +40s"
        " → engine started +1s → ready +30s (apply→Ready 3m31s)"
    ]


def test_a_phase_under_way_has_no_duration_and_there_is_no_total() -> None:
    phases = [
        {"name": "planned", "startedAt": "2025-05-01T12:00:00Z", "endedAt": "2025-05-01T12:00:01Z"},
        {"name": "nodesProvisioned", "startedAt": "2025-05-01T12:00:01Z"},
    ]
    assert timeline_lines(phases) == ["timeline: planned 1s → nodes provisioned ... (not ready yet)"]
    assert timeline_lines([]) == []


def test_durations_read_as_a_person_writes_them() -> None:
    assert [format_duration(s) for s in (0, 42.4, 62, 3900)] == ["0s", "42s", "1m02s", "1h05m00s"]
