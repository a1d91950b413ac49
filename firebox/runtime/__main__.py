from ..wire import settings
from .container import run
from .template import run_template

if settings.TEMPLATE_FD.get() is not None:  # a memory snapshot's template, not a container
    run_template()
else:
    run()
