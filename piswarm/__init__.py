"""piswarm: a room of Raspberry Pis as one parallel computer, over MQTT.

This package is the part every role shares: the wire protocol (:mod:`piswarm.protocol`),
the MQTT client conventions (:mod:`piswarm.mqtt`) and the ``piswarm`` command line
(:mod:`piswarm.cli`). It depends only on what a Pi has: paho-mqtt, psutil and numpy.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
