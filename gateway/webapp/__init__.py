"""The reference dApp page at /app/ (``webapp.enabled``; on under ``gateway dev``)."""
