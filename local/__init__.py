"""Code that only runs on a developer's machine: the local stack behind ``make run``."""
