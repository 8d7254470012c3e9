"""Dell iDRAC: a task that turns into a job, and the 8-session limit.

iDRAC answers long operations (firmware updates, BIOS settings, SCP export/import) with a task monitor under
``/redfish/v1/TaskService/Tasks/JID_...``; the work is a *job* in the Lifecycle Controller queue
(``/redfish/v1/Managers/iDRAC.Embedded.1/Jobs/JID_...``, also ``/redfish/v1/JobService/Jobs``). Depending on the
firmware the task monitor disappears (404) when the job is scheduled for the next reboot, or reports
``TaskState: Completed`` while the job is merely ``Scheduled``. This quirk follows the job itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redfleet.redfish import uri as U
from redfleet.redfish.errors import TaskFailed, TaskTimeout
from redfleet.redfish.quirks import Quirk

if TYPE_CHECKING:
    from redfleet.redfish.capabilities import Capabilities
    from redfleet.redfish.client import RedfishClient, TaskOutcome

_JOB_OK = {"completed"}
_JOB_BAD = {"failed", "completedwitherrors", "cancelled", "aborted"}
# Scheduled jobs wait for a host reboot: that is a successful end of the wait (the caller decides about rebooting).
_JOB_WAITING = {"scheduled"}


class DellQuirk(Quirk):
    name = "dell"

    @classmethod
    def matches(cls, caps: Capabilities, root: dict[str, Any]) -> bool:
        return caps.vendor == "Dell"

    async def follow_task(
        self,
        client: RedfishClient,
        monitor: str,
        deadline: float,
        poll: float,
        on_progress: Callable[[TaskOutcome], None] | None,
    ) -> TaskOutcome | None:
        from redfleet.redfish.client import task_outcome

        job_id = monitor.rstrip("/").rsplit("/", 1)[-1]
        if not job_id.upper().startswith(("JID_", "RID_")):
            return None
        managers = client.caps.services.get("Managers", "/redfish/v1/Managers")
        job_uris = [U.join(managers, "iDRAC.Embedded.1", "Jobs", job_id), f"/redfish/v1/JobService/Jobs/{job_id}"]
        use_job = False
        task_doc: dict[str, Any] | None = None
        while True:
            doc: dict[str, Any] | None = None
            if not use_job:
                resp = await client.request("GET", monitor, kind="task_poll")
                if resp.status == 404:
                    use_job = True  # the task became a job
                    continue
                if resp.status < 400 and resp.body:
                    from redfleet.redfish.jsonutil import loads

                    try:
                        doc = loads(resp.body)
                    except ValueError:
                        doc = None
                task_doc = doc
                if doc and on_progress is not None:
                    on_progress(task_outcome(monitor, doc))
                state = str((doc or {}).get("TaskState") or "")
                if resp.status != 202 and state.lower() in ("completed", "exception", "killed", "cancelled", ""):
                    # Completed task: the job may still be pending; look at the job for the real outcome.
                    use_job = True
                    continue
            else:
                for juri in job_uris:
                    doc = await client.try_get(juri, cache=False)
                    if doc is not None:
                        break
                if doc is None:
                    if task_doc is not None and task_doc.get("TaskState"):
                        # Finished task without a job (not every task is a job): the task's state stands.
                        from redfleet.redfish.client import _finish

                        return _finish(task_outcome(monitor, task_doc))
                    raise TaskFailed(f"Dell job {job_id} not found under {job_uris[0]}", bmc=client.base_url,
                                     uri=monitor)
                outcome = task_outcome(monitor, doc)
                state = outcome.state.lower()
                if on_progress is not None:
                    on_progress(outcome)
                if state in _JOB_OK or state in _JOB_WAITING:
                    return outcome
                if state in _JOB_BAD:
                    raise TaskFailed(
                        f"Dell job {job_id} ended {outcome.state}: {doc.get('Message', '')}", bmc=client.base_url,
                        uri=monitor, body=doc,
                    )
            if time.monotonic() >= deadline:
                raise TaskTimeout(f"Dell task/job {job_id} still running when the wait ended", bmc=client.base_url,
                                  uri=monitor)
            await asyncio.sleep(min(poll, max(0.01, deadline - time.monotonic())))


QUIRK = DellQuirk
