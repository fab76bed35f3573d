from wayfare.kit.db import run_env
from wayfare.services.users.models import metadata

run_env(metadata)
