"""The in-band agent (``redfleet agent``) and the simulator's ingest feeder.

- :mod:`.fields`: DCGM field names/ids and the NVML → DCGM mapping table (what every in-band sample is called);
- collectors: :mod:`.nvml` (nvidia-ml-py), :mod:`.dcgm` (dcgm-exporter scrape), :mod:`.kmsg` (kernel ``NVRM: Xid``
  lines from /dev/kmsg, dmesg text or ``journalctl -k -o json``), :mod:`.nvme` (nvme-cli JSON / raw log pages,
  decoded by :mod:`redfleet.predict`);
- :mod:`.core`: :class:`~.core.Agent` builds one :class:`~redfleet.model.ingest.IngestBatch` per interval;
- :mod:`.pusher`: delivery to ``POST /api/v1/ingest`` (bounded retries, buffer, pipelined client);
- :mod:`.simfeed`: :class:`~.simfeed.SimFeeder`, one batch per simulated node per interval.
"""
