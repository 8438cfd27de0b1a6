"""The YAML presets (``<name>.yaml``), read by ``training.config.preset_mapping``."""

# The preset a run, a sweep or a command trains with when none is named: minutes on a laptop CPU
# (DESIGN.md: everyone runs it there first).
DEFAULT_RUN_PRESET = "tiny-cpu"
