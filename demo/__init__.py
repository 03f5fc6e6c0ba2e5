"""A whole room on one machine: a broker, the head's coordinator and display, and a
simulated fleet doing real work (:mod:`demo.cluster`), behind ``piswarm demo``
(:mod:`demo.cli`). The one package that may put every role in one process."""
