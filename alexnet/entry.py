"""The entry of the `alexnet` command and of `python -m alexnet`: a Ctrl-C while the CLI loads is any Ctrl-C.

Python's own handler raises KeyboardInterrupt wherever the signal lands, and during the imports of the
CLI (NumPy, the package) that would end the process with a traceback and no exit status of ours. Here it
exits 130 with one line, as a Ctrl-C anywhere else does.
"""

import sys


def main():
    try:
        from alexnet.cli import main as cli_main  # inside the guard: the import is what may be interrupted
    except KeyboardInterrupt:
        print("alexnet: interrupted", file=sys.stderr)
        return 130
    return cli_main()
