from ..wire import settings
from .container import run
from .template import run_checkpointed, run_template

if settings.TEMPLATE_FD.get() is not None:  # a memory snapshot's template, not a container
    run_template()
elif settings.CHECKPOINT.get() is not None:  # a gVisor container to store the memory of
    run_checkpointed()
else:
    run()
