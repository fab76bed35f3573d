from wayfare.kit.db import run_env
from wayfare.services.bookings.models import metadata

run_env(metadata)
