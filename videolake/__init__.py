"""videolake's command line; the library is ``pipeline``.

Importing videolake turns on Ultralytics' safe loading of weights and turns off its run-time pip
installs, in this process and the ones it starts (Ray workers import videolake too): Ultralytics
reads both settings once, when it is first imported. See ``videolake.pipeline.models``.
"""

from videolake.pipeline.models import set_ultralytics_env

set_ultralytics_env()
