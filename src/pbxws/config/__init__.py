"""
The typed configuration of pbxws.

One :class:`Config` per process, built by :func:`load_config` from defaults,
a TOML file, the environment (``SOKETI_*`` for drop-in compatibility, and our
own ``PBXWS_*``) and CLI overrides, in that order of precedence. See
``config.example.toml`` at the repository root for every option.

The ``pbxws config`` click group lives in :mod:`pbxws.config.cli` and is not
imported here.
"""

from .env import CONFIG_VARIABLE, pbxws_variables
from .errors import ConfigError
from .features import unsupported_features
from .limits import AppLimits, resolve_limits
from .load import load_config, load_config_with_warnings
from .model import (
    MASK,
    AdapterConfig,
    AppConfig,
    Config,
    LimitsConfig,
    LogLevel,
    MetricsConfig,
    RedisConfig,
    ServerConfig,
    SslConfig,
    WebhookConfig,
    WebhookDeliveryConfig,
    WebhookEventType,
    WebhookFilter,
)
from .render import redacted, render_toml
from .soketi import MAPPED as SOKETI_VARIABLES
from .validate import Problem, validate_config

__all__ = [
    "CONFIG_VARIABLE",
    "MASK",
    "SOKETI_VARIABLES",
    "AdapterConfig",
    "AppConfig",
    "AppLimits",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "LogLevel",
    "MetricsConfig",
    "Problem",
    "RedisConfig",
    "ServerConfig",
    "SslConfig",
    "WebhookConfig",
    "WebhookDeliveryConfig",
    "WebhookEventType",
    "WebhookFilter",
    "load_config",
    "load_config_with_warnings",
    "pbxws_variables",
    "redacted",
    "render_toml",
    "resolve_limits",
    "unsupported_features",
    "validate_config",
]
