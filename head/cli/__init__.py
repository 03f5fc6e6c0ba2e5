"""The head's commands: ``piswarm status``, ``display`` and ``head`` (:mod:`.views`),
and ``piswarm job ...`` (:mod:`.jobs`). Library code lives beside, not here."""
