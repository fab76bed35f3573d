from wayfare.cli import app

app(prog_name="wayfare")
