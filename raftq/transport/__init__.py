"""TCP transport: sans-IO framing plus per-connection actors behind the ``Network`` seam."""
