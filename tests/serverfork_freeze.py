"""Imported last by the fork server (``serverfork.PRELOAD``): moves everything the preload
created (~340,000 objects: Django, Twisted, the SDKs...) out of the cyclic collector's reach.

Otherwise every forked server's collections scanned that inherited heap: its start-up's
collections and the start-up's own ``gc.collect()`` before ``gc.freeze()`` (playground.startup),
each also writing to the inherited pages and so copying them. A server frozen this way keeps the
same objects and runs the same start-up; only the collector skips what no server allocated.
"""

import gc

gc.collect()
gc.freeze()
