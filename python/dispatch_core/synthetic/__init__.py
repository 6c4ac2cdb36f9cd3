"""Synthetic London fleets and the demo: scenario data, not part of the serving path."""
