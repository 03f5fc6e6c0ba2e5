"""What runs on the head node besides the broker, by role: the job coordinator
(:mod:`head.coordinator`), the kiosk and the models it shows (:mod:`head.display`), the
head's commands (:mod:`head.cli`), its settings (:mod:`head.config`), and the clients a
command talks to the coordinator with (:mod:`head.session`, :mod:`head.jobclient`)."""
