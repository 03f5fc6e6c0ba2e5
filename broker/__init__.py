"""The Mosquitto side of piswarm: users and ACL (:mod:`broker.users`), the generated
configuration (:mod:`broker.config`) and a runner for a real ``mosquitto``
(:mod:`broker.runner`). Runs on the head node."""
