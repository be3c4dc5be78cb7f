"""Prometheus metrics for a node, and the small HTTP server that exposes them."""
