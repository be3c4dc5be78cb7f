"""Job handlers that the real-process tests import into workers (``--import``)."""
