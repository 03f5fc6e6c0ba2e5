"""Scaling experiments: the same job over a sweep of nodes and workers, measured.

- :mod:`~head.experiment.plan`: what to run (pure)
- :mod:`~head.experiment.fit`: speed-up, efficiency, Amdahl and Gustafson (pure)
- :mod:`~head.experiment.record`: one CSV row per finished run, read back to resume
- :mod:`~head.experiment.lab`: the room as one MQTT session sees it
- :mod:`~head.experiment.runner`: runs a plan, run by run, and publishes each
- :mod:`~head.experiment.report`: the PNG plots and the text summary
"""
