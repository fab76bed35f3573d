from wayfare.kit.db import run_env
from wayfare.services.hotels.models import metadata

run_env(metadata)
