"""The project's one configuration error.

`ConfigError` is raised for any bad setting, of the model (`UniSTConfig.validate`), of a training run
(`PretrainConfig`, `key=value` overrides) or of a forecasting policy; the message names the field and
the fix. It subclasses ValueError so callers that catch ValueError keep working.
"""


class ConfigError(ValueError):
    """A bad configuration or override: the message names the field and the fix."""


__all__ = ["ConfigError"]
