"""What runs on the head node besides the broker: the cluster model
(:mod:`head.cluster`), the MQTT feed into it (:mod:`head.feed`), text views
(:mod:`head.summary`) and the demo (:mod:`head.demo`)."""
