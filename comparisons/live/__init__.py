"""The live-comparison core, shared by every transport (docs/protocol.md).

- :mod:`~comparisons.live.core`: the façade (:class:`LiveComparisons`, one per process, and a
  :class:`Connection` per authenticated socket: ``start``, ``cancel``, ``watch``, ``unwatch``);
- :mod:`~comparisons.live.run`: a run and its explicit state machine (:class:`RunState`), its
  model slots and the fan-out to subscribers;
- :mod:`~comparisons.live.subscribers`: the :class:`Subscriber` seam transports implement;
- :mod:`~comparisons.live.messages`: typed cross-process messages and group names;
- :mod:`~comparisons.live.registry`: the runs of this process and their control channel;
- :mod:`~comparisons.live.flusher`: batched progress writes.

The outbound events themselves are defined once in :mod:`comparisons.events`.
"""
