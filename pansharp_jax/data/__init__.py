"""Floor 1: scenes, sensors, file I/O, Wald-protocol simulation and input pipelines."""

from pansharp_jax.data.scene import Scene
from pansharp_jax.data.sensors import SENSORS, Sensor, get_sensor, load_sensor_file, register_sensor

__all__ = ["Scene", "Sensor", "SENSORS", "get_sensor", "load_sensor_file", "register_sensor"]
