"""`rembg p` itself (rembg's own p_command) without the rest of rembg's command line: rembg's
`cli` extra also brings its web server's packages (FastAPI, Gradio) only to import the `s`
command beside it. This loads rembg/commands/p_command.py with the packages it needs (click,
filetype, watchdog: tests/requirements.txt) and runs it with the arguments given.

Usage: rembg_p.py [rembg p options] INPUT_FOLDER OUTPUT_FOLDER  (as `rembg p`)
"""
import os
import sys
import types

import rembg

# The package's own __init__ imports every command, the `s` server's among them; only the
# folder where p_command.py lives is needed.
commands = types.ModuleType("rembg.commands")
commands.__path__ = [os.path.join(os.path.dirname(rembg.__file__), "commands")]
sys.modules["rembg.commands"] = commands

from rembg.commands.p_command import p_command  # noqa: E402

if __name__ == "__main__":
    p_command(prog_name="rembg p")
