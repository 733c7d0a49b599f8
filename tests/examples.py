"""A small history a reader can check by eye (times are UTC unless said otherwise).

Tenant T, app A, triggered_from app-run unless noted:
- r1  created 2025-03-01 15:59:59.999999  alice  running -> succeeded (20 tokens) -> succeeded
      again, a retry with 25 tokens (the latest). Shanghai day 2025-03-01 (23:59:59.999999 local).
- r2  created 2025-03-01 16:00:00          alice  running -> failed (7 tokens). Shanghai 2025-03-02.
- r3  created 2025-03-01 17:30:00, created_at '' (older writer; started_at is the created time)
                                           bob    running -> paused -> running (3 tokens), unfinished.
- r4  created 2025-03-01 18:00:00          bob    running -> paused (2 tokens); its versions arrive
      out of order (the paused one first).
- r5  created 2025-03-02 03:00:00          carol  debugging, succeeded (100 tokens): other trigger.
- r6  same times as r2 but under tenant U: never visible to tenant T.

In Asia/Shanghai: 2025-03-01 has r1; 2025-03-02 has r2, r3, r4 (users alice, bob, bob).
In UTC all four app-run runs fall on 2025-03-01.
"""

from __future__ import annotations

from tests.reference import Version

T = "0a000000-0000-4000-8000-00000000000a"
U = "0b000000-0000-4000-8000-00000000000b"
A = "a1000000-0000-4000-8000-0000000000a1"
ALICE = "ee000000-0000-4000-8000-000000000001"
BOB = "ee000000-0000-4000-8000-000000000002"
CAROL = "ee000000-0000-4000-8000-000000000003"
R1, R2, R3, R4, R5, R6 = (f"{n}0000000-0000-4000-8000-000000000000" for n in range(1, 7))


def _version(run_id: str, time: int, log_version: int, status: str, tokens: int, **fields: object) -> Version:
    values: dict[str, object] = {
        "time": time,
        "id": run_id,
        "log_version": log_version,
        "tenant_id": T,
        "app_id": A,
        "workflow_id": A,
        "triggered_from": "app-run",
        "type": "workflow",
        "version": "draft",
        "status": status,
        "total_tokens": tokens,
        "total_steps": 1,
        "exceptions_count": 0,
        "elapsed_time": None,
        "created_by_role": "end_user",
        "created_by": ALICE,
        "created_at": "",
        "started_at": "",
        "finished_at": "",
    }
    values.update(fields)
    return Version(**values)  # type: ignore[arg-type]


def history() -> list[Version]:
    r1 = {"created_at": "2025-03-01T15:59:59.999999", "started_at": "2025-03-01T16:00:00.100000"}
    r2 = {"created_at": "2025-03-01T16:00:00", "started_at": "2025-03-01T16:00:00"}
    r3 = {"created_by": BOB, "started_at": "2025-03-01T17:30:00"}
    r4 = {"created_by": BOB, "created_at": "2025-03-01T18:00:00+00:00", "started_at": "2025-03-01T18:00:00"}
    r5 = {"created_by": CAROL, "triggered_from": "debugging", "created_at": "2025-03-02T03:00:00",
          "started_at": "2025-03-02T03:00:00", "finished_at": "2025-03-02T03:00:09"}  # fmt: skip
    done1 = {**r1, "finished_at": "2025-03-01T16:00:05"}
    done2 = {**r2, "finished_at": "2025-03-01T16:00:01.5", "error_message": "boom"}
    return [
        _version(R1, 1740844800, 100, "running", 0, **r1),
        _version(R1, 1740844805, 200, "succeeded", 20, **done1),
        _version(R1, 1740844900, 300, "succeeded", 25, **done1),
        _version(R2, 1740844800, 100, "running", 0, **r2),
        _version(R2, 1740844802, 200, "failed", 7, **done2),
        _version(R3, 1740850200, 100, "running", 0, **r3),
        _version(R3, 1740850300, 200, "paused", 1, **r3),
        _version(R3, 1740850400, 300, "running", 3, **r3),
        _version(R4, 1740852060, 200, "paused", 2, **r4),  # arrives first, though it is the later version
        _version(R4, 1740852120, 100, "running", 0, **r4),
        _version(R5, 1740884400, 100, "succeeded", 100, **r5),
        _version(
            R6,
            1740844800,
            100,
            "succeeded",
            50,
            **{**r2, "tenant_id": U, "finished_at": "2025-03-01T16:00:01"},
        ),
    ]
