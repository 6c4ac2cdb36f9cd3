"""Views of the state: the operating picture, the Prometheus export and the WatchEvents
stream of durable entries."""
