from wayfare.kit.db import run_env
from wayfare.services.audit.models import metadata

run_env(metadata)
