from wayfare.kit.db import run_env
from wayfare.services.flights.models import metadata

run_env(metadata)
