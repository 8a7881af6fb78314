"""Domain plugins: each supplies data readers, writers and a synthetic generator; no training loop."""
