"""Configuration: the schema (typed dataclasses), composition of YAML layers and overrides,
cache identities, secrets. Code below the CLI receives dataclasses, never raw YAML."""

from lat.config.compose import (
    NON_GROUP_DIRS,
    PACKAGE_CONFIGS,
    SECTIONS,
    apply_overrides,
    available,
    config_dirs,
    find_config,
    load_config,
    parse_overrides,
    recorded_config,
    to_dict,
    to_yaml,
)
from lat.config.schema import (
    PAPER_PREFIXES,
    AlignConfig,
    Config,
    DataConfig,
    EvalConfig,
    JudgeConfig,
    LoggingConfig,
    LoraConfig,
    MethodConfig,
    ModelConfig,
    PreviewConfig,
    ProbeConfig,
    RunConfig,
    TrainConfig,
    check_ranges,
)
from lat.config.secrets import redact, secrets

__all__ = [
    "NON_GROUP_DIRS", "PACKAGE_CONFIGS", "SECTIONS", "apply_overrides", "available", "config_dirs", "find_config", "load_config",
    "parse_overrides", "recorded_config", "to_dict", "to_yaml", "PAPER_PREFIXES", "AlignConfig", "Config", "DataConfig",
    "EvalConfig", "JudgeConfig", "LoggingConfig", "LoraConfig", "MethodConfig", "ModelConfig", "PreviewConfig", "ProbeConfig",
    "RunConfig", "TrainConfig", "check_ranges", "redact", "secrets",
]
