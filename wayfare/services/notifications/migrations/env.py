from wayfare.kit.db import run_env
from wayfare.services.notifications.models import metadata

run_env(metadata)
