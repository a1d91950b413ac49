"""Apps whose functions run in images; tests/test_image.py checks what the containers see."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import firebox as modal

HERE = Path(__file__).resolve().parent
DATA = HERE / "image_data"
sys.path.insert(0, str(HERE / "image_src"))  # so add_local_python_source finds imghelper

base = modal.Image.debian_slim()
# tabulate: a package the host's environment does not have (six it has: the runpod SDK needs it)
pip_image = base.pip_install("six==1.17.0", "tabulate==0.9.0")
full = (
    pip_image.env({"IMAGE_GREETING": "hello"})
    .run_commands('mkdir -p /opt/made && echo "built $IMAGE_GREETING" > /opt/made/marker')
    .add_local_file(DATA / "a.txt", "/opt/baked/a.txt", copy=True)
    .add_local_dir(DATA, "/opt/bakeddir", copy=True, ignore=["*.log"])
    .workdir("/opt/made")
    .add_local_file(DATA / "a.txt", "/srv/one.txt")
    .add_local_dir(DATA, "/srv/live", ignore=["*.log"])
    .add_local_python_source("imghelper")
)
apt_image = base.apt_install("figlet")

app = modal.App("test-images", image=full)


def _read(path):
    try:
        return Path(path).read_text()
    except OSError as exc:
        return f"{type(exc).__name__}"


@app.function()
def probe():
    return _probe()


@app.function(isolation="gvisor")
def probe_gvisor():
    return _probe()


def _probe():
    import imghelper
    import six
    import tabulate

    return {
        "six": six.__version__,
        "tabulate": tabulate.__version__,
        "greeting": os.environ.get("IMAGE_GREETING"),
        "cwd": os.getcwd(),
        "marker": _read("/opt/made/marker"),
        "baked": _read("/opt/baked/a.txt"),
        "baked_dir": sorted(str(p.relative_to("/opt/bakeddir"))
                            for p in Path("/opt/bakeddir").rglob("*")),
        "live_file": _read("/srv/one.txt"),
        "live_dir": sorted(str(p.relative_to("/srv/live")) for p in Path("/srv/live").rglob("*")),
        "imghelper": imghelper.VALUE,
    }


@app.function(image=base)
def plain():
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return "no tabulate"
    return "tabulate"


@app.function(image=pip_image, isolation="process")
def unisolated():
    import six

    return {"six": six.__version__, "marker": _read("/opt/made/marker")}


apt_app = modal.App("test-images-apt")


@apt_app.function(image=apt_image)
def figlet(text):
    return shutil.which("figlet"), subprocess.run(["figlet", text], capture_output=True,
                                                  text=True).stdout


bad_app = modal.App("test-images-bad")


@bad_app.function(image=pip_image.run_commands("echo about-to-fail", "exit 3"))
def never():
    return "unreachable"
