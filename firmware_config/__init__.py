"""What a technician writes on a gate's SD card: the typed config and its loader.

load_config(Path("gate.toml"), overrides=ConfigOverrides(broker=...)) -> GateConfig
camera_from_source("/dev/video0") -> CameraConfig
ConfigError: every problem at once, one line each: "gate.toml: camera.fsp: unknown key; ..."
"""
