"""Use cases: what the HTTP routes, the schedule, the queue consumer and the local runner call."""
