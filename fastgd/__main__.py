"""``python -m fastgd``: the command line, from the installed fastgd.

``python -m`` imports packages from the current folder first. Run from the
root of a fastgd checkout after ``pip install .``, it would import the
checkout's source tree (which has no compiled Cython extension) instead of
the installed package. When fastgd is installed somewhere else than the copy
found in the current folder, the command therefore runs again in a Python
that does not look in the current folder, like the ``fastgd`` script does.
"""

import importlib.machinery
import os
import subprocess
import sys

# What the command runs in that case: the current folder is the first entry
# of ``sys.path`` for ``python -c`` too.
_RUN_INSTALLED = "import sys; del sys.path[0]; from fastgd._cli import main; sys.exit(main())"


def installed_package_dir():
    """The folder of the fastgd that ``import fastgd`` finds outside the current folder, or None.

    The search leaves the current folder out of ``sys.path``, as the re-run does;
    reading the installed distribution's metadata instead would find the
    ``fastgd.egg-info`` that ``pip install .`` leaves in a checkout. None
    too for an editable install, whose package is found by its own finder.
    """
    current = os.path.abspath(os.getcwd())
    search_path = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != current]
    spec = importlib.machinery.PathFinder.find_spec("fastgd", search_path)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.abspath(next(iter(spec.submodule_search_locations)))


def shadowed_installation():
    """The installed fastgd's folder if a copy in the current folder is running instead."""
    running = os.path.dirname(os.path.abspath(__file__))
    installed = installed_package_dir()
    in_current_folder = os.path.dirname(running) == os.path.abspath(os.getcwd())
    if installed is None or not in_current_folder or os.path.samefile(installed, running):
        return None
    return installed


if __name__ == "__main__":
    installed = shadowed_installation()
    if installed is not None:
        print(
            f"fastgd: running the installed fastgd ({installed}), not the source tree "
            "in the current folder.",
            file=sys.stderr,
        )
        sys.exit(subprocess.call([sys.executable, "-c", _RUN_INSTALLED, *sys.argv[1:]]))
    from fastgd._cli import main

    sys.exit(main())
