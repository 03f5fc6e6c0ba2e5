"""The job coordinator: the router (:mod:`.router`) between the broker and one class per
kind of job (:mod:`.prime_jobs`, :mod:`.life_jobs`), each over its SQLite store
(:mod:`.jobstore`, :mod:`.lifestore`), and the janitor that keeps the broker's retained
messages to what the protocol allows (:mod:`.janitor`)."""
