"""Suite-wide test settings."""

from hypothesis import settings

# Property tests check behaviour, not speed: no per-example deadline (a loaded 2-core CI machine can
# stall any single example), and a fixed example budget so the suite's run time is predictable.
settings.register_profile("powerrl", deadline=None, max_examples=100)
settings.load_profile("powerrl")
