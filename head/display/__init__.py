"""The head node's pygame kiosk: the cluster scene (:mod:`.cluster_scene`) in a main loop
(:mod:`.app`) fed by MQTT through a bounded queue. Pure parts — colours, layout — have no
pygame in them and are tested without a screen."""
