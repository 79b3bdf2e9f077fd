"""What a technician writes on a gate's SD card: the typed config and its loader.

load_config(Path("gate.toml"), overrides=ConfigOverrides(broker=...)) -> GateConfig
camera_from_source("/dev/video0") -> CameraConfig
ConfigError: every problem at once, one line each: "gate.toml: camera.fsp: unknown key; ..."
"""

from firmware_config.errors import ConfigError, Problem
from firmware_config.loader import (
    CREDENTIAL_NAME,
    PASSWORD_ENV,
    ConfigOverrides,
    camera_from_source,
    load_config,
    read_config_file,
)
from firmware_config.schema import (
    BrokerAddress,
    CameraConfig,
    DecoderConfig,
    GateConfig,
    IndicatorConfig,
    MqttConfig,
    OpenCVCamera,
    Picamera2Camera,
    PolicyConfig,
    ReplayCamera,
    device_id_for_hostname,
    parse_broker_url,
)

__all__ = [
    "CREDENTIAL_NAME",
    "PASSWORD_ENV",
    "BrokerAddress",
    "CameraConfig",
    "ConfigError",
    "ConfigOverrides",
    "DecoderConfig",
    "GateConfig",
    "IndicatorConfig",
    "MqttConfig",
    "OpenCVCamera",
    "Picamera2Camera",
    "PolicyConfig",
    "Problem",
    "ReplayCamera",
    "camera_from_source",
    "device_id_for_hostname",
    "load_config",
    "parse_broker_url",
    "read_config_file",
]
