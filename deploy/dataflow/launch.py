"""The flex template's program (FLEX_TEMPLATE_PYTHON_PY_FILE): the job's own entry point,
as `python -m pipeline.run` and the `message-archiver` console script run it. The
launcher passes each template parameter as --name=value and adds the Dataflow flags
(--runner, --project, --region, --temp_location, --setup_file, ...)."""

import sys

from pipeline.run import main

if __name__ == "__main__":
    sys.exit(main())
