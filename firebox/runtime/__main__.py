from .container import run

run()
