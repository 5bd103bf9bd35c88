"""``python -m fastgd``: the command line, from the installed fastgd.

``python -m`` imports packages from the current folder first. Run from the
root of a fastgd checkout after ``pip install .``, it would import the
checkout's source tree (which has no compiled Cython extension) instead of
the installed package. When fastgd is installed somewhere else than the copy
found in the current folder, the command therefore runs again in a Python
that does not look in the current folder, like the ``fastgd`` script does.
"""

import os
import subprocess
import sys

# What the command runs in that case: the current folder is the first entry
# of ``sys.path`` for ``python -c`` too.
_RUN_INSTALLED = "import sys; del sys.path[0]; from fastgd._cli import main; sys.exit(main())"


def installed_package_dir():
    """The folder of the installed fastgd distribution's package, or None.

    None too for an editable install, whose package is the source tree itself.
    """
    from importlib import metadata

    try:
        distribution = metadata.distribution("fastgd")
    except metadata.PackageNotFoundError:
        return None
    init = os.path.abspath(distribution.locate_file("fastgd/__init__.py"))
    return os.path.dirname(init) if os.path.isfile(init) else None


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
